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


class Image:  # gradio's gr.Image, by its class name: the img2img tabs' pictures in the WebUI, reForge, Classic
    pass


class HTML:  # a ForgeCanvas block carries the tab's elem id
    pass


class Textbox:  # ForgeCanvas's LogicalImage inputs are Textboxes
    pass


def test_preview_finds_each_tabs_picture_whatever_the_host_made_it_of(webui):
    """As the page is built: gr.Image components with the tabs' elem ids (the original WebUI, reForge, Forge
    Classic), or ForgeCanvas blocks followed by their two hidden inputs, the background one holding the picture
    (Forge: its inpaint upload tab stays a gr.Image). The foreground input of a sketch tab's canvas is kept as its
    paint; Inpaint's is the mask, never laid over the picture."""
    from modules import scripts

    from lib_depth2img.webui import hosts, ui

    for canvases in ((), hosts.PICTURE_INPUTS[:4]):
        webui.callbacks.callbacks["after_component"].clear()
        script = webui.script_module.Depth2ImgScript()
        found, made, paint, layers = dict.fromkeys(hosts.PICTURE_INPUTS), {}, {}, {}
        ui.watch_pictures(script, found, paint)
        for elem_id in hosts.PICTURE_INPUTS:
            if elem_id in canvases:
                scripts.component_made([script], HTML(), elem_id=elem_id)
                layers[elem_id] = Textbox()
                scripts.component_made([script], layers[elem_id], elem_id="uuid_1",
                                       elem_classes=["logical_image_foreground"])
                made[elem_id] = Textbox()
                scripts.component_made([script], made[elem_id], elem_id="uuid_1",
                                       elem_classes=["logical_image_background"])
            else:
                made[elem_id] = Image()
                scripts.component_made([script], made[elem_id], elem_id=elem_id)
            scripts.component_made([script], Image(), elem_id="another_picture")  # the page's other pictures
        assert found == made
        assert paint == {name: layers[name] for name in ("img2img_sketch", "inpaint_sketch") if name in canvases}


def test_the_original_webui_is_told_by_ldm_without_modules_forge(webui):
    from lib_depth2img.webui import generation, hosts

    assert generation.HOST.name == "AUTOMATIC1111 WebUI" and generation.HOST.has_own_depth_path
    assert hosts.found_line(generation.HOST) == ("Depth-to-image: running in AUTOMATIC1111 WebUI; switched off, the "
                                                 "host's own depth path runs.")
