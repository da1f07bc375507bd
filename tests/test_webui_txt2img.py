"""txt2img with a depth model, Hires fix, and img2img's picture for depth, against the WebUI imitation."""

import base64
import io

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from reference import conditioning_by_the_rule, depth_by_the_rule, synthetic_image
from webui_helpers import FakeSDModel, _as_tensor, _expected, _picture, _script

from lib_depth2img import Depth2ImgError


def _txt2img(webui, script_args=(), width=128, height=128, **kwargs):
    p = webui.processing.StableDiffusionProcessingTxt2Img(width, height, script_args=script_args, **kwargs)
    processed = webui.processing.process_images(p, [_script(webui, is_img2img=False)])
    return p, processed


def _stripe_map(tmp_path) -> str:
    """A 16-bit 64x256 map, black but for a white stripe of columns 112-127: base64, as the API sends it."""
    values = np.zeros((64, 256), dtype=np.uint16)
    values[:, 112:128] = 65535
    path = tmp_path / "stripe.png"
    cv2.imwrite(str(path), values)
    return base64.b64encode(path.read_bytes()).decode()


def _stripe_fitted_by_hand(fit: str) -> torch.Tensor:
    """The stripe map fitted to 128x128 by OpenCV, whose linear resize (no antialiasing) is the WebUI's
    rule for maps. Crop: the middle 64 of 256 columns (96-159; zero at both cuts, so cutting before or
    after scaling x2 gives the same), scaled x2. Stretch: rows x2, columns halved. ``[1,1,128,128]``."""
    values = np.zeros((64, 256), dtype=np.float32)
    values[:, 112:128] = 1.0
    source = values[:, 96:160] if fit == "crop" else values
    return torch.from_numpy(cv2.resize(source, (128, 128), interpolation=cv2.INTER_LINEAR))[None, None]


def _conditioning(p, which="first"):
    """The depth channel the UNet got in that pass."""
    return next(unet_input for name, unet_input in p.sampled_with if name == which)[:, 4:]


def _white_columns(conditioning) -> int:
    return int((conditioning[0, 0] > 0).all(dim=0).sum())


@pytest.mark.parametrize(("fit", "columns"), [("crop", 4), ("stretch", 1)])
def test_a_depth_map_conditions_txt2img_fitted_as_chosen(webui, depth_model, tmp_path, fit, columns):
    """128x128 from the 64x256 stripe map. Crop: scaled x2 to 128x512, columns 192-319 kept, the stripe at
    224-255 in it = 32 columns = 4 of 16 latent columns. Stretch: 256 -> 128 columns, the stripe at 56-63 =
    latent column 7 alone."""
    model, counter = depth_model
    encoded = _stripe_map(tmp_path)
    p, _ = _txt2img(webui, [{"depth_source": "upload", "depth_map": encoded, "fit": fit}], batch_size=2)
    conditioning = _conditioning(p)
    assert conditioning.shape == (2, 1, 16, 16) and torch.equal(conditioning[0], conditioning[1])
    assert _white_columns(conditioning) == columns
    expected = conditioning_by_the_rule(_stripe_fitted_by_hand(fit), (16, 16))
    assert torch.allclose(conditioning[:1], expected, atol=1e-5)
    assert counter.batches == [] and model.native_depth_calls == 0  # a map costs no forward
    assert p.extra_generation_params["Depth2img depth"] == "map"
    assert p.extra_generation_params["Depth2img fit"] == fit


def test_a_reference_picture_gives_its_depth_not_its_colours(webui, depth_model):
    model, counter = depth_model
    picture = _picture(256, 384)
    p, _ = _txt2img(webui, [{"depth_picture": picture}])
    assert counter.batches == [1] and p.extra_generation_params["Depth2img depth"] == "picture for depth"
    # crop to 128x128: the WebUI scales 384x256 to 192x128 and keeps the middle 128 columns
    fitted = picture.resize((192, 128), Image.LANCZOS).crop((32, 0, 160, 128))
    depth = depth_by_the_rule(model.depth_model.model, _as_tensor(fitted), (384, 384))  # square: 384x384
    assert torch.allclose(_conditioning(p), conditioning_by_the_rule(depth, (16, 16)), atol=1e-3)


def test_a_reference_picture_seen_before_costs_no_forward(webui, depth_model):
    _, counter = depth_model
    encoded = base64.b64encode(_png_bytes(_picture())).decode()
    first, _ = _txt2img(webui, [{"depth_picture": encoded}])
    again, _ = _txt2img(webui, [{"depth_picture": encoded, "gamma": 2.0}])
    assert counter.batches == [1]  # the second took the cache's depth, then its own gamma
    assert not torch.allclose(_conditioning(first), _conditioning(again))


def _png_bytes(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("upscaler", ["Latent", "R-ESRGAN 4x+"])
def test_hires_fix_conditions_its_second_pass_on_the_same_depth(webui, depth_model, tmp_path, upscaler):
    model, counter = depth_model
    encoded = _stripe_map(tmp_path)
    p, processed = _txt2img(webui, [{"depth_source": "upload", "depth_map": encoded, "add_depth_to_results": True}],
                            enable_hr=True, hr_scale=2.0, hr_upscaler=upscaler)
    hires = _conditioning(p, "hires")
    assert hires.shape == (1, 1, 32, 32) and model.native_depth_calls == 0
    assert torch.allclose(hires, conditioning_by_the_rule(_stripe_fitted_by_hand("crop"), (32, 32)), atol=1e-5)
    assert _white_columns(hires) == 8  # 4 of 16 latent columns, twice as many at twice the size
    depth_picture = processed.images[-1]
    assert depth_picture.size == processed.images[0].size == (256, 256)
    assert np.asarray(depth_picture)[:, 96].min() == 255 and np.asarray(depth_picture)[:, 30].max() == 0


def test_hires_fix_to_another_aspect_ratio_crops_the_depth_as_the_latent(webui, depth_model, tmp_path):
    """128x128 to 256x192: upscaled to 256x256 and 64 rows cut, 4 latent rows at the top and 4 at the bottom."""
    model, _ = depth_model
    p, processed = _txt2img(webui, [{"depth_picture": _picture(), "add_depth_to_results": True}],
                            enable_hr=True, hr_resize_x=256, hr_resize_y=192, hr_upscaler="Latent")
    first, hires = _conditioning(p), _conditioning(p, "hires")
    assert hires.shape == (1, 1, 24, 32) and p.truncate_y == 8
    fitted = _picture().resize((192, 128), Image.LANCZOS).crop((32, 0, 160, 128))
    depth = depth_by_the_rule(model.depth_model.model, _as_tensor(fitted), (384, 384))  # square: 384x384
    assert torch.allclose(hires, conditioning_by_the_rule(depth, (32, 32))[..., 4:28, :], atol=1e-3)
    assert first.shape == (1, 1, 16, 16) and processed.images[-1].size == (256, 192)


def test_a_batch_of_three_gets_three_copies(webui, depth_model, tmp_path):
    p, _ = _txt2img(webui, [{"depth_source": "upload", "depth_map": _stripe_map(tmp_path)}], batch_size=3, n_iter=2)
    firsts = [unet_input[:, 4:] for name, unet_input in p.sampled_with if name == "first"]
    assert len(firsts) == 2 and all(c.shape == (3, 1, 16, 16) for c in firsts)
    assert torch.equal(firsts[0][0], firsts[0][2]) and torch.equal(firsts[0], firsts[1])


@pytest.mark.parametrize(("settings", "words"), [
    ([], "give a depth map (depth source 'upload') or a picture for depth"),
    ([{"depth_source": "upload"}], "'upload' but no depth map was given: upload one in the Depth-to-image"),
    ([{"depth_map": "aGVsbG8="}], "A depth map was given: set the depth source to 'upload'"),
    ([False], "Switch Depth-to-image on and give a depth map or a picture for depth"),
])
def test_without_depth_the_guard_stops_before_any_work(webui, depth_model, settings, words):
    p = webui.processing.StableDiffusionProcessingTxt2Img(64, 64, script_args=settings)
    with pytest.raises(Depth2ImgError) as error:
        webui.processing.process_images(p, [_script(webui, is_img2img=False)])
    assert words in str(error.value)
    assert p.sampled_with == [] and "init" not in vars(p)


def test_txt2img_with_other_models_is_untouched(webui):
    webui.shared.sd_model = FakeSDModel(None)
    try:
        p, _ = _txt2img(webui, [{"depth_source": "upload"}])
        assert len(p.sampled_with) == 1 and "Depth2img" not in p.extra_generation_params
        assert not {"txt2img_image_conditioning", "img2img_image_conditioning"} & vars(p).keys()
    finally:
        webui.shared.sd_model = None


def test_p_is_left_as_found_after_txt2img(webui, depth_model, tmp_path):
    p, _ = _txt2img(webui, [{"depth_source": "upload", "depth_map": _stripe_map(tmp_path)}], enable_hr=True)
    assert not {"txt2img_image_conditioning", "img2img_image_conditioning", "init"} & vars(p).keys()
    from lib_depth2img.webui import generation

    assert generation.generation_for(p) is None


def test_img2img_takes_depth_from_another_picture(webui, depth_model):
    model, _ = depth_model
    colours, depth_source = _picture(), _picture(flip=True)
    p = webui.processing.StableDiffusionProcessingImg2Img([colours], 192, 128, script_args=[
        {"depth_picture": depth_source}])
    webui.processing.process_images(p, [_script(webui)])
    expected = _expected(model.depth_model.model, _as_tensor(depth_source))
    own = _expected(model.depth_model.model, _as_tensor(colours))
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
    assert not torch.allclose(p.sampled_with[0], own, atol=1e-2)
    assert p.extra_generation_params["Depth2img depth"] == "picture for depth"
    assert "Depth2img fit" not in p.extra_generation_params  # img2img fits by its Resize mode


def test_batch_tab_pictures_find_their_pictures_for_depth_by_name(webui, depth_model, tmp_path):
    from modules import img2img

    inputs, others = tmp_path / "inputs", tmp_path / "depth"
    inputs.mkdir(), others.mkdir()
    _picture().save(inputs / "street.png")
    Image.fromarray((synthetic_image(128, 192) * 255).astype(np.uint8)[::-1].copy()).save(inputs / "house.png")
    _picture(flip=True).save(others / "street.tiff"), _picture(flip=True).save(others / "house.webp", lossless=True)
    p = webui.processing.StableDiffusionProcessingImg2Img([], 192, 128, script_args=[
        {"depth_map_folder": str(others)}])
    house, street = img2img.process_batch(p, str(inputs), "", "", [_script(webui)])  # sorted: house, street
    assert torch.allclose(street, house, atol=1e-5)  # both from the same picture for depth, not their own
    model, _ = depth_model
    own = _expected(model.depth_model.model, _as_tensor(_picture()))
    assert not torch.allclose(street, own, atol=1e-2)


def test_xyz_axes_exist_in_the_tabs_their_settings_apply_to(webui):
    from lib_depth2img.webui import ui

    class Xyz:
        class AxisOption:
            def __init__(self, label, type, apply, choices=None):
                self.label, self.is_img2img = label, None

        class AxisOptionImg2Img(AxisOption):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.is_img2img = True

        class AxisOptionTxt2Img(AxisOption):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.is_img2img = False

        axis_options = []

    from modules import scripts

    scripts.scripts_data[:] = [type("Data", (), {"module": Xyz, "script_class": type("S", (), {
        "__module__": "xyz_grid.py"})})]
    try:
        ui.add_xyz_axes()
    finally:
        scripts.scripts_data.clear()
    tabs = {axis.label: axis.is_img2img for axis in Xyz.axis_options}
    assert tabs["[Depth2img] Depth gamma"] is None and tabs["[Depth2img] Depth source"] is None
    assert tabs["[Depth2img] Fit to the txt2img size"] is False
    assert tabs["[Depth2img] Estimate depth from the original picture (inpaint)"] is True


def test_the_depth_folder_outside_the_batch_tab_leaves_the_init_picture(webui, depth_model, tmp_path):
    """The folder field is hidden outside the Batch tab but keeps its value: pictures without a file name
    (every other tab's) take their own depth, and the infotext says so."""
    model, _ = depth_model
    _picture(flip=True).save(tmp_path / "street.png")
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[
        {"depth_map_folder": str(tmp_path)}])
    webui.processing.process_images(p, [_script(webui)])
    own = _expected(model.depth_model.model, _as_tensor(_picture()))
    assert torch.allclose(p.sampled_with[0], own, atol=1e-3)
    assert p.extra_generation_params["Depth2img depth"] == "init picture"


@pytest.mark.parametrize(("settings", "tab"), [
    ({"depth_picture": "{path}"}, "txt2img"),
    ({"depth_source": "upload", "depth_map": "{path}"}, "txt2img"),
    ({"depth_picture": "{path}"}, "img2img"),
])
def test_a_path_in_the_api_settings_is_never_read(webui, depth_model, tmp_path, settings, tab):
    """alwayson_scripts once read any server file named in 'depth_picture' or 'depth_map' (and put its depth in the
    results); the same answer now comes whether that file exists or not, and no forward runs."""
    _, counter = depth_model
    path = tmp_path / "secret"
    _picture().save(path, format="PNG")
    args = [{name: str(path) if value == "{path}" else value for name, value in settings.items()}]
    answers = []
    for _ in ("the file exists", "it does not"):
        if tab == "txt2img":
            p = webui.processing.StableDiffusionProcessingTxt2Img(64, 64, script_args=args)
        else:
            p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=args)
        with pytest.raises(Depth2ImgError, match="not valid base64 picture data") as error:
            webui.processing.process_images(p, [_script(webui, is_img2img=tab == "img2img")])
        answers.append(str(error.value))
        path.unlink(missing_ok=True)
    assert answers[0] == answers[1] and counter.batches == []
