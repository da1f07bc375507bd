"""Controls, settings and XYZ-plot axes, all built from ``DepthArgs``."""

from __future__ import annotations

import dataclasses

from modules import script_callbacks, scripts, shared

from lib_depth2img.generation_args import DepthArgs, setting_metadata

XYZ_OVERRIDES_ATTRIBUTE = "depth2img_xyz_overrides"


def build_controls(elem_id) -> tuple[list, list]:
    """The accordion and its controls in ``DepthArgs`` field order, and the infotext fields that restore them."""
    import gradio as gr  # only when the UI is built: generations and the API do not need it
    from modules.ui_components import InputAccordion

    defaults = DepthArgs()
    meta = {name: setting_metadata(name) for name in DepthArgs.names()}
    # No tooltip on the accordion: the WebUI's gradio patch takes tooltips on inputs, not on blocks.
    with InputAccordion(defaults.enabled, label=meta["enabled"]["label"], elem_id=elem_id("enabled")) as enabled:
        controls = [enabled]
        for name in DepthArgs.names()[1:]:
            label, help_text, choices = meta[name]["label"], meta[name]["help"], meta[name]["choices"]
            if choices:
                control = gr.Dropdown(list(choices), value=getattr(defaults, name), label=label,
                                      elem_id=elem_id(name), tooltip=help_text)
            else:
                control = gr.Checkbox(value=getattr(defaults, name), label=label, elem_id=elem_id(name),
                                      tooltip=help_text)
            controls.append(control)
    infotext_fields = [(control, _restore_from_infotext(name)) for control, name in zip(controls, DepthArgs.names(),
                                                                                      strict=True)]
    return controls, infotext_fields


def _restore_from_infotext(name: str):
    def restore(params: dict):
        import gradio as gr

        values = DepthArgs.from_infotext(params)
        return values[name] if name in values else gr.update()

    return restore


def args_for(p, script_args) -> DepthArgs:
    """The script's arguments, with any XYZ-plot cell values on top."""
    return DepthArgs.from_named(getattr(p, XYZ_OVERRIDES_ATTRIBUTE, {}), DepthArgs.from_script_args(script_args))


def add_settings() -> None:
    section = ("depth2img", "Depth-to-image")
    shared.opts.add_option("depth2img_move_to_cpu", shared.OptionInfo(
        False, "Move the depth estimator to the CPU after each generation (saves about 0.5 GB of GPU memory, "
               "costs a transfer per generation)", section=section))


def add_xyz_axes() -> None:
    xyz = next((data.module for data in scripts.scripts_data if data.script_class.__module__ == "xyz_grid.py"), None)
    if xyz is None or any(getattr(axis, "depth2img", False) for axis in xyz.axis_options):
        return
    for spec in dataclasses.fields(DepthArgs):
        if not isinstance(spec.default, bool) and not spec.metadata["choices"]:
            continue
        choices = ["True", "False"] if isinstance(spec.default, bool) else list(spec.metadata["choices"])
        axis = xyz.AxisOptionImg2Img(f"[Depth2img] {spec.metadata['label']}", str, _xyz_apply(spec.name),
                                     choices=lambda choices=choices: choices)
        axis.depth2img = True
        xyz.axis_options.append(axis)


def _xyz_apply(name: str):
    def apply(p, value, _values):
        parsed = DepthArgs.from_infotext({setting_metadata(name)["infotext"]: value})[name]
        setattr(p, XYZ_OVERRIDES_ATTRIBUTE, {**getattr(p, XYZ_OVERRIDES_ATTRIBUTE, {}), name: parsed})

    return apply


def register_callbacks() -> None:
    script_callbacks.on_ui_settings(add_settings)
    script_callbacks.on_before_ui(add_xyz_axes)
