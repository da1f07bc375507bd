"""WebUI entry point: wiring only; everything happens in lib_depth2img.webui."""

from modules import script_callbacks, scripts

from lib_depth2img.webui import batch_names, generation, hosts, results, routes, ui

HOST = hosts.detect()
print(hosts.found_line(HOST))
if HOST is not None:
    generation.use_host(HOST)
    HOST.install()
batch_names.install_batch_tracking()
script_callbacks.on_model_loaded(generation.forget_depth)
script_callbacks.on_image_saved(results.on_image_saved)
script_callbacks.on_app_started(routes.register_routes)
ui.register_callbacks()


class Depth2ImgScript(scripts.Script):
    def __init__(self):
        self.picture_inputs, self.paint, self.page = {}, {}, {}
        self.watching = False

    def title(self):
        return "Depth-to-image"

    def show(self, is_img2img):
        if HOST is None:
            return False
        # The tab's pictures, tabs and size sliders are made before ui() runs: catch them as they are made, once.
        if is_img2img == self.is_img2img and not self.watching:
            self.watching = True
            self.page = dict.fromkeys(ui.page_components(is_img2img))
            ui.watch_components(self, self.page)
            if is_img2img:
                self.picture_inputs = dict.fromkeys(HOST.picture_inputs)
                ui.watch_pictures(self, self.picture_inputs, self.paint)
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        controls, self.infotext_fields = ui.build_controls(self.elem_id, self.picture_inputs, self.page, is_img2img,
                                                           self.paint)
        return controls

    def before_process(self, p, *args):
        generation.before_process(p, args)

    def process(self, p, *args):  # the model is loaded by now, also on Forge
        generation.process(p)

    def process_before_every_sampling(self, p, *args, **kwargs):
        generation.process_before_every_sampling(p)

    def postprocess_image_after_composite(self, p, pp, *args):
        results.postprocess_image_after_composite(p)

    def postprocess(self, p, processed, *args):
        results.postprocess(p, processed)
