// Depth-to-image: tells people what works with the checkpoint picked at the top of the page.
// Reads the quicksettings checkpoint, asks the extension's route whether it is a depth model,
// and shows a notice above txt2img's Generate and a line in the img2img accordion. Anything
// missing (markup, route) means no notice, never a broken page. Binds no events: it re-reads
// the state on the WebUI's own update callbacks, so nothing can be bound twice; it writes only
// text that changed, since each write is itself an update.
(function() {
    var ROUTE = "depth2img/checkpoint?title=";
    var NOTICE_ID = "depth2img_txt2img_notice";
    var asked = null; // the checkpoint title last asked about
    var answer = null; // the route's answer for it, or null while unknown or on failure

    function selectedTitle() {
        // the original WebUI's quicksettings dropdown, or Forge's (a class, no id)
        var input = gradioApp().querySelector("#setting_sd_model_checkpoint input, .model_selection input");
        if (input && input.value) {
            return input.value;
        }
        return (typeof opts === "object" && opts && opts.sd_model_checkpoint) || null;
    }

    function renderNotice(app) {
        var notice = app.querySelector("#" + NOTICE_ID);
        var generateBox = app.querySelector("#txt2img_generate_box");
        if (!(answer && answer.is_depth)) {
            if (notice) {
                notice.remove();
            }
            return;
        }
        if (!notice && generateBox && generateBox.parentElement) {
            notice = document.createElement("div");
            notice.id = NOTICE_ID;
            notice.className = "depth2img-notice";
            generateBox.parentElement.insertBefore(notice, generateBox);
        }
        if (notice) {
            setText(notice, answer.title + " is a depth-to-image model: txt2img needs a depth map or " +
                "picture in the Depth-to-image accordion. Or use the img2img or inpaint tab, where depth comes " +
                "from your picture.");
        }
    }

    function setText(element, text) {
        if (element.textContent !== text) {
            element.textContent = text;
        }
    }

    function givenDepth(app, tab) {
        // what the accordion holds: "map" (source upload, a file given), "picture" (a picture for depth), or null
        var prefix = "#script_" + tab + "_depthtoimage_";
        var source = app.querySelector(prefix + "depth_source input");
        if (source && source.value === "upload") {
            return app.querySelector(prefix + "depth_map .file-preview") ? "map" : null;
        }
        return app.querySelector(prefix + "depth_picture img") ? "picture" : null;
    }

    var STATUS = {
        img2img: function(estimator) {
            return "Depth is active: " + estimator + " depth from the checkpoint.";
        },
        txt2img: function(estimator, given) {
            if (given === "map") {
                return "Depth is active: the uploaded depth map is kept (white = near).";
            }
            if (given === "picture") {
                return "Depth is active: the picture for depth gives its " + estimator + " depth, not its colours.";
            }
            return "Depth is active: give a depth map (source 'upload') or a picture for depth, whose " +
                estimator + " depth is kept and whose colours are not.";
        },
    };

    function renderStatus(app) {
        Object.keys(STATUS).forEach(function(tab) {
            // gradio gives an HTML component's id to its block and to the inner element: write the innermost.
            var found = app.querySelectorAll("#depth2img_" + tab + "_status");
            var status = found[found.length - 1];
            if (!status) {
                return;
            }
            if (!answer) {
                setText(status, "");
            } else if (answer.is_depth) {
                setText(status, STATUS[tab](answer.estimator || "MiDaS", givenDepth(app, tab)));
            } else {
                setText(status, "Depth needs a depth checkpoint such as 512-depth-ema; the selected one is " +
                    "not. For SD 1.5 models, use ControlNet's depth model.");
            }
        });
    }

    function render() {
        var app = gradioApp();
        renderNotice(app);
        renderStatus(app);
    }

    function refresh() {
        var title = selectedTitle();
        if (!title || title === asked) {
            renderStatus(gradioApp()); // a map or picture given or taken away changes the line
            return;
        }
        asked = title;
        answer = null;
        render();
        fetch(ROUTE + encodeURIComponent(title))
            .then(function(response) {
                return response.ok ? response.json() : null;
            })
            .catch(function() {
                return null;
            })
            .then(function(json) {
                if (asked === title) {
                    answer = json && typeof json.is_depth === "boolean" ? json : null;
                    render();
                }
            });
    }

    onUiLoaded(refresh);
    onUiUpdate(refresh);
    onOptionsChanged(refresh);
})();
