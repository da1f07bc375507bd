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


def test_preview_in_a_forge_sketch_tab_lays_the_paint_over_the_picture(webui, depth_model):
    """Forge's sketch canvases hand the picture (RGBA) and the paint (a transparent RGBA layer of its size) apart,
    and its img2img lays the paint over the picture (Image.alpha_composite, modes 1 and 3): the preview must show
    the depth of what Forge generates from, the picture painted by hand here."""
    from PIL import Image, ImageDraw

    from lib_depth2img.webui import preview

    picture = _picture()
    paint = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    ImageDraw.Draw(paint).rectangle((60, 30, 130, 90), fill=(255, 255, 255, 255))
    by_hand = picture.copy()
    by_hand.paste((255, 255, 255), (60, 30, 131, 91))
    settings = DepthArgs().to_script_args()

    def shown(tab, tab_picture, layers=(None, None)):
        pictures = [None] * len(preview.picture_inputs())
        pictures[tab] = tab_picture
        image, message = preview.preview_depth(tab, *pictures, *settings, None, None, *layers)
        assert image is not None, message
        return np.asarray(image, dtype=int)

    expected, plain = shown(0, by_hand), shown(0, picture)
    assert np.abs(expected - plain).mean() > 1  # the paint changes the depth, so a preview without it fails
    background = picture.convert("RGBA")  # as Forge's LogicalImage hands it
    assert np.array_equal(shown(1, background, (paint, None)), expected)  # Sketch
    assert np.array_equal(shown(3, background, (None, paint)), expected)  # Inpaint sketch
    assert np.array_equal(shown(1, background, (None, paint)), plain)  # the other tab's paint is not this one's
    assert np.array_equal(shown(1, background), plain)  # the WebUI, reForge, Classic: no layers apart
