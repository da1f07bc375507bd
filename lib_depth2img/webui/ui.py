"""Controls, settings and XYZ-plot axes, all built from ``DepthArgs``.

The accordion shows only what applies: the map input with the upload source, the picture for depth
with the others (in img2img inside a closed sub-accordion, being optional there), the folder in the
img2img Batch tab, the adjustments in a closed sub-accordion that opens when one differs from its
default (after paste parameters, say), and the preview beside its button.
"""

from __future__ import annotations

import dataclasses
import sys

from modules import script_callbacks, scripts, shared

from lib_depth2img.estimators import non_commercial_note
from lib_depth2img.generation_args import DepthArgs, setting_metadata
from lib_depth2img.webui import batch_names, extra_estimators, generation, option_keys, preview
from lib_depth2img.webui.hosts import SKETCH_INPUTS, attribute_or

RESIZE_NOTE = ("A depth map or picture for depth of another aspect ratio is fitted as the Resize mode above says: "
               "Just resize stretches it, Crop and resize crops it, Resize and fill fills the rest from its edges.")
IMG2IMG_TABS = ("img2img_img2img_tab", "img2img_img2img_sketch_tab", "img2img_inpaint_tab",
                "img2img_inpaint_sketch_tab", "img2img_inpaint_upload_tab", "img2img_batch_tab")
TXT2IMG_SIZE = ("txt2img_width", "txt2img_height")
ADJUSTMENT_ROWS = (("near", "far"), ("gamma", "blur"))
PREVIEW_HEIGHT = 256


def selected_tab_first(count: int) -> str:
    """The js that puts the selected img2img tab's index (get_tab_index is the WebUI's; inline, so no global)
    into the first of the event's ``count`` inputs, and hands back the inputs alone: gradio passes js the
    outputs' values after the inputs', and gradio 4's client, handed more values than inputs, gives each
    gr.State input None without using up a value, so each input after a State gets its neighbour's value
    (in Forge the sketch layers, after txt2img's size placeholders, got None)."""
    return ("(...args) => { args[0] = typeof get_tab_index === 'function' ? "
            f"get_tab_index('mode_img2img') : -1; return args.slice(0, {count}); }}")


def page_components(is_img2img: bool) -> tuple[str, ...]:
    """Elem ids of the page's own components the accordion works with: the img2img tabs, or txt2img's size."""
    return IMG2IMG_TABS if is_img2img else TXT2IMG_SIZE


def watch_components(script, found: dict) -> None:
    """Fills ``found[elem id]`` with each component as the page builds it (before the script's ui runs)."""
    for elem_id in found:
        script.on_after_component(lambda c, e=elem_id: found.__setitem__(e, c.component), elem_id=elem_id)


def watch_pictures(script, found: dict, paint: dict) -> None:
    """Fills ``found[elem id]`` with each img2img tab's picture input as the page builds it, whatever the host
    made it of: the gr.Image with that elem id (the original WebUI, reForge, Forge Classic), or, where the elem
    id names an HTML block (a ForgeCanvas: Forge), the hidden input classed ``logical_image_background`` that
    follows it, which hands the picture over as a PIL picture. A sketch tab's canvas (``SKETCH_INPUTS``) also
    fills ``paint[elem id]`` with its ``logical_image_foreground`` input, the paint Forge lays over the picture."""
    from modules import script_callbacks

    waiting: list[str] = []

    def tab_picture(component, elem_id: str) -> None:
        if any(kind.__name__ == "Image" for kind in type(component).__mro__):  # gradio's Image or a subclass
            found[elem_id] = component
        else:
            waiting.append(elem_id)

    for elem_id in found:
        script.on_after_component(lambda c, e=elem_id: tab_picture(c.component, e), elem_id=elem_id)

    def canvas_picture(component, **kwargs):
        classes = kwargs.get("elem_classes") or ()
        if waiting and waiting[0] in SKETCH_INPUTS and "logical_image_foreground" in classes:
            paint[waiting[0]] = component
        if waiting and "logical_image_background" in classes:
            found[waiting.pop(0)] = component

    script_callbacks.on_after_component(canvas_picture)


def build_controls(elem_id, picture_inputs: dict, page: dict, is_img2img: bool,
                   paint: dict | None = None) -> tuple[list, list]:
    """The accordion's controls in ``DepthArgs`` field order, and the infotext fields that restore them.

    ``picture_inputs``: the img2img tabs' picture components by elem id, for Preview depth, and ``paint`` the
    sketch tabs' paint layers where the host keeps them apart (see ``watch_pictures``); ``page``: the
    components named by ``page_components``, where found.
    """
    import gradio as gr  # only when the UI is built: generations and the API do not need it
    from modules.ui_components import InputAccordion

    tab = "img2img" if is_img2img else "txt2img"
    defaults = DepthArgs()
    made = {}

    def control(name: str, **kwargs):
        made[name] = _control(gr, name, getattr(defaults, name), setting_metadata(name), elem_id(name), **kwargs)
        return made[name]

    # No tooltip on the accordion: the WebUI's gradio patch takes tooltips on inputs, not on blocks.
    with InputAccordion(defaults.enabled, label=setting_metadata("enabled")["label"],
                        elem_id=elem_id("enabled")) as made["enabled"]:
        gr.HTML("", elem_id=f"depth2img_{tab}_status")  # filled by javascript/depth2img.js from the checkpoint route
        with gr.Row():
            control("depth_source")
            control("fit", visible=not is_img2img)
        note = non_commercial_note(extra_estimators.available())
        if note:
            gr.HTML(f"<p class='depth2img-note'>{note}</p>")
        with gr.Row():
            control("invert")
            control("depth_from_original", visible=is_img2img)
            control("add_depth_to_results")
        control("depth_map", visible=defaults.depth_source == "upload")
        if is_img2img:  # optional there: closed until wanted
            with gr.Accordion("Depth from another picture", open=False,
                              visible=defaults.depth_source != "upload") as picture_box:
                control("depth_picture")
        else:
            picture_box = control("depth_picture", visible=defaults.depth_source != "upload")
        control("depth_map_folder", visible=is_img2img and page.get("img2img_batch_tab") is None)
        if is_img2img:
            gr.HTML(f"<p class='depth2img-note'>{RESIZE_NOTE}</p>")
        with gr.Accordion("Depth adjustments", open=False) as adjustments:
            for row in ADJUSTMENT_ROWS:
                with gr.Row():
                    for name in row:
                        control(name)
        with gr.Row():
            with gr.Column(scale=1, min_width=160):
                preview_button = gr.Button("Preview depth", elem_id=f"depth2img_{tab}_preview_button")
                preview_message = gr.HTML("", elem_id=f"depth2img_{tab}_preview_message")
            preview_image = gr.Image(label="Depth preview", type="pil", interactive=False, height=PREVIEW_HEIGHT,
                                     visible=False, elem_id=f"depth2img_{tab}_preview")
    controls = [made[name] for name in DepthArgs.names()]
    _show_what_applies(gr, made, picture_box, adjustments, page)
    _wire_preview(gr, preview_button, preview_image, preview_message, picture_inputs, paint or {}, page, controls,
                  is_img2img)
    infotext_fields = [(made[name], _restore_from_infotext(name)) for name in DepthArgs.names()
                       if tab in setting_metadata(name)["tabs"]]
    return controls, infotext_fields


def _show_what_applies(gr, made: dict, picture_box, adjustments, page: dict) -> None:
    made["depth_source"].change(
        fn=lambda source: (gr.update(visible=source == "upload"), gr.update(visible=source != "upload")),
        inputs=[made["depth_source"]], outputs=[made["depth_map"], picture_box])
    names = [name for row in ADJUSTMENT_ROWS for name in row]
    defaults = [getattr(DepthArgs(), name) for name in names]

    def open_if_changed(*values):  # never closes it: the person may have opened it
        changed = any(value != default for value, default in zip(values, defaults, strict=True))
        return gr.update(open=True) if changed else gr.update()

    for name in names:
        made[name].change(fn=open_if_changed, inputs=[made[n] for n in names], outputs=[adjustments])
    for elem_id in IMG2IMG_TABS:
        if page.get(elem_id) is not None:
            page[elem_id].select(fn=lambda batch=elem_id == "img2img_batch_tab": gr.update(visible=batch),
                                 outputs=[made["depth_map_folder"]])


def _wire_preview(gr, button, image, message, picture_inputs: dict, paint: dict, page: dict, controls: list,
                  is_img2img: bool) -> None:
    from modules.call_queue import wrap_queued_call

    tab_index = gr.Number(value=-1, visible=False)
    pictures = [picture_inputs.get(name) or gr.State(None) for name in preview.picture_inputs()]
    size = [page.get(name) or gr.State(None) for name in TXT2IMG_SIZE]
    paint_layers = [paint.get(name) or gr.State(None) for name in SKETCH_INPUTS]
    def show_preview(*values):  # the picture takes room only once there is one
        picture, words = preview.preview_depth(*values)
        return gr.update(value=picture, visible=picture is not None), words

    inputs = [tab_index, *pictures, *controls, *size, *paint_layers]
    button.click(fn=wrap_queued_call(show_preview), _js=selected_tab_first(len(inputs)) if is_img2img else None,
                 inputs=inputs, outputs=[image, message])


def _control(gr, name: str, default, meta, elem_id: str, visible: bool = True):
    label, help_text = meta["label"], meta["help"]
    common = {"label": label, "elem_id": elem_id, "tooltip": help_text, "visible": visible}
    if name == "depth_source":  # only the estimators whose weights are here
        return gr.Dropdown(["checkpoint", "upload", *extra_estimators.available()], value=default, **common)
    if meta["choices"]:
        return gr.Dropdown(list(meta["choices"]), value=default, **common)
    if meta["bounds"]:
        low, high, step = meta["bounds"]
        return gr.Slider(low, high, value=default, step=step, **common)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, **common)
    if name == "depth_map":
        return gr.File(type="binary", file_types=list(batch_names.SUFFIXES), **common)
    if name == "depth_picture":
        return gr.Image(type="pil", height=PREVIEW_HEIGHT, **common)
    return gr.Textbox(value=default, **common)


def _restore_from_infotext(name: str):
    def restore(params: dict):
        import gradio as gr

        values = DepthArgs.from_infotext(params)
        return values[name] if name in values else gr.update()

    return restore


def add_settings() -> None:
    section = ("depth2img", "Depth-to-image")
    shared.opts.add_option(option_keys.MOVE_TO_CPU, shared.OptionInfo(
        False, "Move the depth estimator to the CPU after each generation (saves about 0.5 GB of GPU memory, "
               "costs a transfer per generation)", section=section))
    shared.opts.add_option(option_keys.SAVE_DEPTH_MAPS, shared.OptionInfo(
        False, "Save the depth maps added to the results beside the pictures (same file name, -depth suffix)",
        section=section))


def add_xyz_axes() -> None:
    xyz = next((data.module for data in scripts.scripts_data if data.script_class.__module__ == "xyz_grid.py"), None)
    axis_options = attribute_or(xyz, "axis_options", None, "the X/Y/Z plot gets no depth axes") if xyz else None
    axis_option = attribute_or(xyz, "AxisOption", None, "the X/Y/Z plot gets no depth axes") if xyz else None
    if axis_options is None or axis_option is None or any(getattr(a, "depth2img", False) for a in axis_options):
        return
    # The tab-only axis classes: in xyz_grid.py itself, or beside AxisOption (Forge Classic's lib_xyz.classes).
    home = sys.modules.get(axis_option.__module__) or xyz
    kinds = {("txt2img", "img2img"): axis_option}
    for tabs, name in ((("img2img",), "AxisOptionImg2Img"), (("txt2img",), "AxisOptionTxt2Img")):
        kinds[tabs] = getattr(xyz, name, None) or attribute_or(
            home, name, None, f"the X/Y/Z plot gets no axis for the {tabs[0]}-only depth settings")
    for spec in dataclasses.fields(DepthArgs):
        label, kind = f"[Depth2img] {spec.metadata['label']}", kinds[spec.metadata["tabs"]]
        if kind is None:
            continue
        if spec.metadata["bounds"]:
            axis = kind(label, float, _xyz_apply(spec.name))
        elif isinstance(spec.default, bool) or spec.metadata["choices"]:
            choices = ["True", "False"] if isinstance(spec.default, bool) else list(spec.metadata["choices"])
            axis = kind(label, str, _xyz_apply(spec.name), choices=lambda choices=choices: choices)
        else:
            continue
        axis.depth2img = True
        axis_options.append(axis)


def _xyz_apply(name: str):
    def apply(p, value, _values):
        parsed = DepthArgs.from_infotext({setting_metadata(name)["infotext"]: value})[name]
        overrides = getattr(p, generation.XYZ_OVERRIDES_ATTRIBUTE, {})
        setattr(p, generation.XYZ_OVERRIDES_ATTRIBUTE, {**overrides, name: parsed})

    return apply


def register_callbacks() -> None:
    script_callbacks.on_ui_settings(add_settings)
    script_callbacks.on_before_ui(add_xyz_axes)
