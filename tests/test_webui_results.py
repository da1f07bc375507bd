"""results.py against the WebUI imitation: depth maps among the results and saved beside the pictures."""


import numpy as np
from PIL import Image
from reference import depth_by_the_rule
from webui_helpers import DPT_INPUT_OF_A_192x128_PICTURE, _as_tensor, _img2img, _picture, _script


def test_depth_maps_added_to_the_results_when_asked(webui, depth_model):
    _, processed = _img2img(webui, [_picture(), _picture(flip=True)], script_args=[{"add_depth_to_results": True}])
    assert len(processed.images) == 4
    assert processed.images[2].mode == "L" and processed.images[2].size == (192, 128)


def test_depth_maps_in_results_carry_their_pictures_infotexts(webui, depth_model):
    _, processed = _img2img(webui, [_picture(), _picture(flip=True)], script_args=[{"add_depth_to_results": True}])
    assert processed.infotexts == ["picture 0", "picture 1", "picture 0", "picture 1"]


def test_depth_maps_saved_beside_their_pictures_when_the_setting_says_so(webui, depth_model, tmp_path):
    model, _ = depth_model
    first, second = _picture(), _picture(flip=True)
    p = webui.processing.StableDiffusionProcessingImg2Img([first, second], 192, 128)
    webui.shared.opts.data["depth2img_save_depth_maps"] = True
    try:
        webui.processing.process_images(p, [_script(webui)], outpath=str(tmp_path))
    finally:
        webui.shared.opts.data.pop("depth2img_save_depth_maps")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["00000-1234-depth.png", "00000-1234.png",
                                                          "00001-1234-depth.png", "00001-1234.png"]
    from lib_depth2img.depth_image import depth_to_image

    depth = depth_by_the_rule(model.depth_model.model, _as_tensor(second), DPT_INPUT_OF_A_192x128_PICTURE)[0]
    expected = np.asarray(depth_to_image(depth).resize((192, 128)), dtype=float)
    saved = np.asarray(Image.open(tmp_path / "00001-1234-depth.png"), dtype=float)
    assert np.abs(saved - expected).mean() < 2  # batched vs single forward differ in the last bits only


def test_nothing_saved_without_the_setting(webui, depth_model, tmp_path):
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
    webui.processing.process_images(p, [_script(webui)], outpath=str(tmp_path))
    assert [f.name for f in tmp_path.iterdir()] == ["00000-1234.png"]
