"""preview.py against the WebUI imitation: Preview depth of the current tab's picture or of an uploaded map."""


import numpy as np
from reference import depth_by_the_rule
from webui_helpers import DPT_INPUT_OF_A_192x128_PICTURE, FakeSDModel, _as_tensor, _map_png, _mask, _picture

from lib_depth2img.generation_args import DepthArgs


def _preview(picture, tab=0, settings=(True, "checkpoint", False, True, False)):  # positional, as the UI
    from lib_depth2img.webui import preview

    pictures = [None] * len(preview.picture_inputs())
    pictures[tab] = picture
    return preview.preview_depth(tab, *pictures, *settings)


def test_preview_shows_the_depth_of_the_current_tabs_picture(webui, depth_model):
    model, counter = depth_model
    picture = _picture()
    image, message = _preview(picture)
    assert image.size == picture.size and image.mode == "L" and "192x128" in message
    from lib_depth2img.depth_image import depth_to_image

    depth = depth_by_the_rule(model.depth_model.model, _as_tensor(picture), DPT_INPUT_OF_A_192x128_PICTURE)[0]
    expected = np.asarray(depth_to_image(depth).resize(picture.size), dtype=int)
    difference = np.abs(np.asarray(image, dtype=int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # float noise can flip a rounding
    inverted, _ = _preview(picture, settings=(True, "checkpoint", True, True, False))
    assert np.abs(np.asarray(inverted, dtype=int) + np.asarray(image, dtype=int) - 255).mean() < 2
    inpaint, _ = _preview({"image": picture, "mask": _mask()}, tab=2)
    assert np.array_equal(np.asarray(inpaint), np.asarray(image))


def test_preview_says_what_is_missing(webui, depth_model):
    from lib_depth2img.webui import preview

    assert _preview(None) == (None, preview.NO_PICTURE)
    assert _preview(_picture(), tab=-1) == (None, preview.NO_PICTURE)
    webui.shared.sd_model = FakeSDModel(None)
    image, message = _preview(_picture())
    assert image is None and "depth checkpoint" in message


def test_preview_of_an_uploaded_map_with_adjustments(webui, depth_model, tmp_path):
    from lib_depth2img.webui import preview

    path = _map_png(tmp_path)
    settings = DepthArgs(depth_source="upload", depth_map=path.read_bytes(), invert=True).to_script_args()
    image, message = preview.preview_depth(0, _picture(), None, None, None, None, *settings)
    assert image.size == (192, 128) and "uploaded depth map" in message
    assert np.asarray(image)[:, 0].mean() > 250 and np.asarray(image)[:, -1].mean() < 5  # inverted ramp
    no_map = DepthArgs(depth_source="upload").to_script_args()
    assert preview.preview_depth(0, _picture(), None, None, None, None, *no_map) == (None, preview.NO_MAP)
