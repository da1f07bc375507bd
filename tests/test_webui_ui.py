"""ui.py against the WebUI imitation: the X/Y/Z plot axis and the settings section."""



from lib_depth2img.generation_args import DepthArgs


def test_xyz_axis_values_override_the_script_args(webui):
    from lib_depth2img.webui import generation, ui

    p = webui.processing.StableDiffusionProcessingImg2Img([], 64, 64)
    ui._xyz_apply("invert")(p, "True", ["True", "False"])
    assert generation.args_for(p, [True]) == DepthArgs(invert=True)


def test_setting_registered_in_its_own_section(webui):
    from lib_depth2img.webui import ui

    assert ui.add_settings in webui.callbacks.callbacks["ui_settings"]
    ui.add_settings()
    assert webui.shared.opts.data_labels["depth2img_move_to_cpu"].section == ("depth2img", "Depth-to-image")
