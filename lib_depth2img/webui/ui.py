"""Controls, settings and XYZ-plot axes, all built from ``DepthArgs``."""

from __future__ import annotations

import dataclasses

from modules import script_callbacks, scripts, shared

from lib_depth2img.estimators import non_commercial_note
from lib_depth2img.generation_args import DepthArgs, setting_metadata
from lib_depth2img.webui import extra_estimators, generation, option_keys, preview, user_maps

RESIZE_NOTE = ("A depth map of another aspect ratio is fitted as the Resize mode above says: Just resize "
               "stretches it, Crop and resize crops it, Resize and fill fills the rest from its edges.")
# Puts the selected img2img tab's index first (get_tab_index is the WebUI's); inline, so no global.
SELECTED_TAB_FIRST = ("(...args) => { args[0] = typeof get_tab_index === 'function' ? "
                      "get_tab_index('mode_img2img') : -1; return args; }")


def build_controls(elem_id, picture_inputs: dict) -> tuple[list, list]:
    """The accordion and its controls in ``DepthArgs`` field order, and the infotext fields that restore them.

    ``picture_inputs``: the img2img tabs' picture components by elem id, for Preview depth.
    """
    import gradio as gr  # only when the UI is built: generations and the API do not need it
    from modules.call_queue import wrap_queued_call
    from modules.ui_components import InputAccordion

    defaults = DepthArgs()
    meta = {name: setting_metadata(name) for name in DepthArgs.names()}
    # No tooltip on the accordion: the WebUI's gradio patch takes tooltips on inputs, not on blocks.
    with InputAccordion(defaults.enabled, label=meta["enabled"]["label"], elem_id=elem_id("enabled")) as enabled:
        gr.HTML("", elem_id="depth2img_status")  # filled by javascript/depth2img.js from the checkpoint route
        controls = [enabled]
        for name in DepthArgs.names()[1:]:
            controls.append(_control(gr, name, getattr(defaults, name), meta[name], elem_id(name)))
            note = non_commercial_note(extra_estimators.available()) if name == "depth_source" else ""
            if note:
                gr.HTML(f"<p class='depth2img-note'>{note}</p>")
            if name == "depth_map":
                gr.HTML(f"<p class='depth2img-note'>{RESIZE_NOTE}</p>")
        with gr.Row():
            preview_button = gr.Button("Preview depth", elem_id="depth2img_preview_button")
            tab_index = gr.Number(value=-1, visible=False)
        preview_message = gr.HTML("", elem_id="depth2img_preview_message")
        preview_image = gr.Image(label="Depth preview", type="pil", interactive=False, elem_id="depth2img_preview")
    pictures = [picture_inputs.get(name) or gr.State(None) for name in preview.picture_inputs()]
    preview_button.click(fn=wrap_queued_call(preview.preview_depth), _js=SELECTED_TAB_FIRST,
                         inputs=[tab_index, *pictures, *controls], outputs=[preview_image, preview_message])
    infotext_fields = [(control, _restore_from_infotext(name)) for control, name in zip(controls, DepthArgs.names(),
                                                                                      strict=True)]
    return controls, infotext_fields


def _control(gr, name: str, default, meta, elem_id: str):
    label, help_text = meta["label"], meta["help"]
    if name == "depth_source":  # only the estimators whose weights are here
        choices = ["checkpoint", "upload", *extra_estimators.available()]
        return gr.Dropdown(choices, value=default, label=label, elem_id=elem_id, tooltip=help_text)
    if meta["choices"]:
        return gr.Dropdown(list(meta["choices"]), value=default, label=label, elem_id=elem_id, tooltip=help_text)
    if meta["bounds"]:
        low, high, step = meta["bounds"]
        return gr.Slider(low, high, value=default, step=step, label=label, elem_id=elem_id, tooltip=help_text)
    if isinstance(default, bool):
        return gr.Checkbox(value=default, label=label, elem_id=elem_id, tooltip=help_text)
    if name == "depth_map":
        return gr.File(label=label, type="binary", elem_id=elem_id, tooltip=help_text,
                       file_types=list(user_maps.SUFFIXES))
    return gr.Textbox(value=default, label=label, elem_id=elem_id, tooltip=help_text)


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
    if xyz is None or any(getattr(axis, "depth2img", False) for axis in xyz.axis_options):
        return
    for spec in dataclasses.fields(DepthArgs):
        label = f"[Depth2img] {spec.metadata['label']}"
        if spec.metadata["bounds"]:
            axis = xyz.AxisOptionImg2Img(label, float, _xyz_apply(spec.name))
        elif isinstance(spec.default, bool) or spec.metadata["choices"]:
            choices = ["True", "False"] if isinstance(spec.default, bool) else list(spec.metadata["choices"])
            axis = xyz.AxisOptionImg2Img(label, str, _xyz_apply(spec.name), choices=lambda choices=choices: choices)
        else:
            continue
        axis.depth2img = True
        xyz.axis_options.append(axis)


def _xyz_apply(name: str):
    def apply(p, value, _values):
        parsed = DepthArgs.from_infotext({setting_metadata(name)["infotext"]: value})[name]
        overrides = getattr(p, generation.XYZ_OVERRIDES_ATTRIBUTE, {})
        setattr(p, generation.XYZ_OVERRIDES_ATTRIBUTE, {**overrides, name: parsed})

    return apply


def register_callbacks() -> None:
    script_callbacks.on_ui_settings(add_settings)
    script_callbacks.on_before_ui(add_xyz_axes)
