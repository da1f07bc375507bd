"""Thin, tiny and extreme pictures (issue 19): a 4x3000 strip, a 1x1 dot, a 1x10000 line.

The official resize rules round a strip's short side to 0 (torch's "output (H: 0, W: 384)") and give
Depth Anything a 518x388500 input; every side is clamped to between one multiple and 8x the estimator's
size instead. Each estimator's rule is checked over random sizes, each network class is run at the
extremes, and the strip and the dot go through the depth function, the PNG writer, the CLI, Preview
depth and the endpoint: each gives a map of the picture's own size, never a torch error.
"""

import base64
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from reference import conditioning_by_the_rule, depth_by_the_rule, rule_weights, synthetic_image
from tiny_estimators import _initialised, create_tiny_estimator, tiny_rule_state
from webui_helpers import _script

from lib_depth2img import Depth2ImgError
from lib_depth2img.depth import estimate_depth
from lib_depth2img.depth_image import depth_png, depth_to_image, save_depth_png
from lib_depth2img.estimators import ESTIMATORS
from lib_depth2img.estimators.dpt import DPTConfig, DPTDepthModel
from lib_depth2img.estimators.midas_small import MidasSmall
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.pipeline import condition_pictures
from lib_depth2img.transforms import MIDAS_V21_INPUT, estimator_input_size, prepare_estimator_input
from lib_depth2img.weights import load_estimator_weights

ROOT = Path(__file__).parent.parent
SPECS = {**{name: spec.input_spec for name, spec in ESTIMATORS.items()}, "midas_v21": MIDAS_V21_INPUT}
LONGEST = 8  # the longest input side, in the estimator's sizes (384 for DPT, 518 for Depth Anything)
STRIP, DOT = (4, 3000), (1, 1)


def official_size(height: int, width: int, spec) -> tuple[int, int]:
    """MiDaS's ``Resize(keep_aspect_ratio=True).get_size`` (Depth Anything V2 uses the same class), written
    out from its source: the scale by the resize method, then each side to a multiple with its bound."""
    scale_h, scale_w = spec.size / height, spec.size / width
    if spec.resize_method == "lower_bound":
        scale_h = scale_w = max(scale_h, scale_w)
    elif spec.resize_method == "upper_bound":
        scale_h = scale_w = min(scale_h, scale_w)
    elif abs(1 - scale_w) < abs(1 - scale_h):  # minimal
        scale_h = scale_w
    else:
        scale_w = scale_h

    def to_multiple(x, min_val=0, max_val=None):
        y = int(np.round(x / spec.multiple_of) * spec.multiple_of)
        if max_val is not None and y > max_val:
            y = int(np.floor(x / spec.multiple_of) * spec.multiple_of)
        if y < min_val:
            y = int(np.ceil(x / spec.multiple_of) * spec.multiple_of)
        return y

    bounds = {"lower_bound": {"min_val": spec.size}, "upper_bound": {"max_val": spec.size}}.get(spec.resize_method, {})
    return to_multiple(scale_h * height, **bounds), to_multiple(scale_w * width, **bounds)


sides = st.one_of(st.integers(1, 10000), st.integers(1, 40), st.sampled_from([1, 2, 9999, 10000]))


@given(name=st.sampled_from(sorted(SPECS)), height=sides, width=sides)
@example(name="dpt_hybrid", height=4, width=3000)
@example(name="depth_anything_v2_vits", height=4, width=3000)
@example(name="midas_v21_small", height=10000, width=1)
@example(name="dpt_large", height=1, width=1)
@settings(max_examples=600, deadline=None)
def test_every_size_gets_a_bounded_input_of_whole_multiples(name, height, width):
    spec = SPECS[name]
    size = estimator_input_size(height, width, spec)
    assert all(side % spec.multiple_of == 0 and spec.multiple_of <= side <= LONGEST * spec.size for side in size)
    official = official_size(height, width, spec)
    if all(spec.multiple_of <= side <= LONGEST * spec.size for side in official):
        assert size == official  # wherever the official rule gives a usable input, it is the input
    else:
        assert size == tuple(min(max(side, spec.multiple_of), LONGEST * spec.size) for side in official)


@pytest.mark.parametrize(("name", "height", "width", "expected"), [
    ("dpt_hybrid", 4, 3000, (32, 384)),      # 3000 -> 384 (x0.128), 4 -> 0.5, at least one multiple
    ("dpt_hybrid", 1, 1, (384, 384)),
    ("dpt_hybrid", 200, 10000, (384, 3072)),  # 200 -> 384 (x1.92), 10000 -> 19200, at most 8 x 384
    ("midas_v21_small", 10000, 1, (256, 32)),
    ("depth_anything_v2_vits", 4, 3000, (518, 4144)),  # 4 -> 518 (x129.5), 3000 -> 388500, at most 8 x 518
    ("depth_anything_v2_vits", 1, 1, (518, 518)),
])
def test_the_extremes_by_hand(name, height, width, expected):
    assert estimator_input_size(height, width, SPECS[name]) == expected


@given(name=st.sampled_from(sorted(SPECS)), short=st.integers(1, 40), long=st.integers(1, 10000),
       tall=st.booleans())
@example(name="dpt_hybrid", short=4, long=3000, tall=False)
@settings(max_examples=40, deadline=None)
def test_thin_pictures_are_prepared_without_a_torch_error(name, short, long, tall):
    height, width = (long, short) if tall else (short, long)
    prepared = prepare_estimator_input(torch.rand(1, 3, height, width), SPECS[name])
    assert prepared.shape[-2:] == estimator_input_size(height, width, SPECS[name])
    assert torch.isfinite(prepared).all()


@pytest.mark.parametrize(("height", "width"), [(0, 5), (5, 0), (-1, 3)])
def test_a_picture_without_area_is_our_error(height, width):
    with pytest.raises(Depth2ImgError, match="at least 1x1"):
        estimator_input_size(height, width, SPECS["dpt_hybrid"])


def _tiny(name: str) -> torch.nn.Module:
    """The small network of ``name`` (tests/tiny_estimators.py) with the parity rule's weights: its depth varies."""
    estimator = create_tiny_estimator(name)
    load_estimator_weights(estimator, tiny_rule_state(name))
    return estimator


def _tiny_dpt_large() -> torch.nn.Module:
    """DPT-Large's class (a plain ViT, 16-pixel patches), small."""
    with torch.device("meta"):
        module = DPTDepthModel(DPTConfig(vit_dim=32, depth=4, heads=2, hybrid=False, taps=(0, 1, 2, 3),
                                         features=(16, 16, 32, 32)))
    return _initialised(module)


def _midas_small() -> torch.nn.Module:
    module = MidasSmall()
    state = rule_weights({k: tuple(v.shape) for k, v in module.state_dict().items()})
    state.update({k: v.abs() + 0.5 for k, v in state.items() if k.endswith("running_var")})
    module.load_state_dict(state)
    return module


def _check_bounded(size: tuple[int, int], spec) -> None:
    """Before a forward: the official rule's 518x388500 input would take the test minutes and gigabytes."""
    assert max(estimator_input_size(*size, spec)) <= LONGEST * spec.size


NETWORK_CLASSES = {"dpt_hybrid": lambda: _tiny("dpt_hybrid"), "dpt_large": _tiny_dpt_large,
                   "midas_v21_small": _midas_small, "depth_anything_v2_vits": lambda: _tiny("depth_anything_v2_vits")}


@pytest.mark.parametrize("name", sorted(NETWORK_CLASSES))
def test_each_network_class_maps_a_strip_and_a_dot(name):
    """Each class at its smallest and longest inputs; the map is back at the picture's size."""
    network = NETWORK_CLASSES[name]().eval()
    for size in (STRIP, DOT, (3000, 4)):
        _check_bounded(size, SPECS[name])
        depth = estimate_depth(network, torch.rand(1, 3, *size), input_spec=SPECS[name])
        assert depth.shape == (1, 1, *size) and torch.isfinite(depth).all()


@pytest.mark.parametrize(("name", "input_size"), [("dpt_hybrid", (32, 384)), ("depth_anything_v2_vits", (518, 4144))])
def test_a_strips_depth_is_the_rules_at_the_clamped_size(name, input_size):
    """The strip's depth equals the estimator's rule written out at the hand-computed input size."""
    network, spec = _tiny(name), SPECS[name]
    _check_bounded(STRIP, spec)
    strip = torch.from_numpy(synthetic_image(*STRIP)).permute(2, 0, 1)[None]
    expected = depth_by_the_rule(network, strip, input_size, spec.mean, spec.std, output_size=STRIP,
                                 output_mode=spec.output_mode, output_align_corners=spec.output_align_corners)
    depth = estimate_depth(network, strip, input_spec=spec)
    assert expected.std() > 0 and torch.allclose(depth, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_the_pipeline_conditions_a_strip_and_a_dot(tiny_hybrid):
    strip = torch.from_numpy(synthetic_image(*STRIP)).permute(2, 0, 1)[None]
    result = condition_pictures(tiny_hybrid, strip, (1, 375))
    assert result.depth.shape == (1, 1, 32, 384) and result.conditioning.shape == (1, 1, 1, 375)
    assert result.conditioning.min() == -1 and result.conditioning.max() > 0.99  # stretched over [-1, 1]
    dot = condition_pictures(tiny_hybrid, torch.full((1, 3, 1, 1), 0.4), (1, 1))
    assert dot.depth.shape == (1, 1, 384, 384) and dot.conditioning.shape == (1, 1, 1, 1)
    assert dot.conditioning.item() == -1  # one pixel is flat: -1, as the training rule's (d - min) gives


def _png(data: bytes | Path) -> np.ndarray:
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as image:
        return np.asarray(image)


def test_the_png_writers_take_a_1x1_and_a_1xn_map(tmp_path):
    assert _png(save_depth_png(torch.full((1, 1, 1, 1), 3.0), tmp_path / "dot.png")).tolist() == [[0]]
    ramp = torch.tensor([0.0, 1.0, 2.0, 3.0]).view(1, 1, 1, 4)
    assert _png(save_depth_png(ramp, tmp_path / "line.png")).tolist() == [[0, 85, 170, 255]]  # 255 * i / 3
    assert _png(depth_png(ramp.view(1, 4, 1), 16)).tolist() == [[0], [21845], [43690], [65535]]
    assert np.asarray(depth_to_image(ramp[0])).shape == (1, 4)
    for shape in [(2, 1, 4, 4), (1, 2, 4, 4), (4,), (1, 0, 4)]:  # not one map: our error
        with pytest.raises(Depth2ImgError, match="one depth map"):
            depth_to_image(torch.zeros(shape))


def _picture_file(path: Path, height: int, width: int) -> Path:
    pixels = synthetic_image(max(height, 2), max(width, 2))[:height, :width]  # its ramps need two pixels
    Image.fromarray((pixels * 255).round().astype(np.uint8)).save(path)
    return path


def test_the_cli_writes_a_strip_a_dot_and_a_photo_in_one_run(tmp_path, midas_pt):
    photos, out = tmp_path / "photos", tmp_path / "maps"
    photos.mkdir()
    sizes = {"dot": DOT, "photo": (48, 64), "strip": STRIP}
    for name, size in sizes.items():
        _picture_file(photos / f"{name}.png", *size)
    result = subprocess.run([sys.executable, "-m", "lib_depth2img", "depth", str(photos), "--weights", str(midas_pt),
                             "-o", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert result.stdout.split() == [str(out / f"{name}-depth.png") for name in sizes]
    maps = {name: _png(out / f"{name}-depth.png") for name in sizes}
    assert {name: depth.shape for name, depth in maps.items()} == sizes
    assert maps["dot"].tolist() == [[0]]
    assert maps["photo"].std() > 0 and maps["strip"].std() > 0


def _encoded(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _pil(height: int, width: int) -> Image.Image:
    pixels = synthetic_image(max(height, 2), max(width, 2))[:height, :width]
    return Image.fromarray((pixels * 255).round().astype(np.uint8))


def test_the_endpoint_maps_a_strip_and_a_dot(webui, depth_model):
    pytest.importorskip("fastapi", reason="the depth endpoint is a FastAPI route, as the WebUI's API")
    pytest.importorskip("httpx", reason="FastAPI's test client needs httpx")
    import fastapi
    from fastapi.testclient import TestClient

    from lib_depth2img.webui import routes

    app = fastapi.FastAPI()
    routes.register_routes(None, app)
    client = TestClient(app)
    model, _ = depth_model
    strip = _pil(*STRIP)
    answer = client.post("/depth2img/v1/depth", json={"image": _encoded(strip)})
    assert answer.status_code == 200, answer.text
    got = _png(base64.b64decode(answer.json()["image"])).astype(np.float64)
    assert got.shape == STRIP
    pixels = torch.from_numpy(np.asarray(strip, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    depth = depth_by_the_rule(model.depth_model.model, pixels, (32, 384))[0]
    expected = np.asarray(depth_to_image(depth).resize(strip.size, Image.BILINEAR), dtype=np.float64)
    assert got.std() > 10 and np.abs(got - expected).mean() < 2.0
    answer = client.post("/depth2img/v1/depth", json={"image": _encoded(_pil(*DOT)), "bits": 16})
    assert answer.status_code == 200, answer.text
    assert _png(base64.b64decode(answer.json()["image"])).shape == DOT


def test_preview_depth_of_a_strip_and_a_dot(webui, depth_model):
    from lib_depth2img.webui import preview

    for size in (STRIP, DOT):
        picture = _pil(*size)
        pictures = [picture] + [None] * (len(preview.picture_inputs()) - 1)
        image, message = preview.preview_depth(0, *pictures, True, "checkpoint", False, True, False)
        assert image is not None and image.size == picture.size, message
        assert f"{picture.width}x{picture.height}" in message


def test_img2img_at_the_webuis_widest_size(webui, depth_model):
    """2048x64, the widest the WebUI's sliders allow: DPT's rule made its input 0x384."""
    model, counter = depth_model
    picture = _pil(64, 2048)
    p = webui.processing.StableDiffusionProcessingImg2Img([picture], 2048, 64)
    webui.processing.process_images(p, [_script(webui)])
    assert counter.batches == [1] and p.sampled_with[0].shape == (1, 1, 8, 256)
    pixels = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    expected = conditioning_by_the_rule(depth_by_the_rule(model.depth_model.model, pixels, (32, 384)), (8, 256))
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)


class _ResizeLimit:
    """Fails any resize, by Pillow or torch, to more than ``pixels``, before it allocates them."""

    def __init__(self, monkeypatch, pixels: int):
        self.pixels = pixels
        pil_resize, torch_resize = Image.Image.resize, torch.nn.functional.interpolate

        def pil(image, size, *args, **kwargs):
            self.check(size)
            return pil_resize(image, size, *args, **kwargs)

        def tensor(x, size=None, *args, **kwargs):
            self.check(size or (0, 0))
            return torch_resize(x, size, *args, **kwargs)

        monkeypatch.setattr(Image.Image, "resize", pil)
        monkeypatch.setattr(torch.nn.functional, "interpolate", tensor)

    def check(self, size) -> None:
        assert size[0] * size[1] <= self.pixels, f"a resize to {size[0]}x{size[1]}"


THIN = [STRIP, (3000, 4), DOT, (1, 3000), (3000, 1)]
TARGETS = [(512, 512), (64, 2048), (2048, 64)]


@pytest.mark.parametrize("mode", [1, 2])  # crop, fill: stretch (0) has no arithmetic to fail
def test_a_picture_for_depth_of_any_shape_is_fitted_to_the_generation(webui, monkeypatch, mode):
    """The WebUI's resize_image (the imitation does its arithmetic) makes a strip 0 pixels high for "fill"
    (PIL: "height and width must be > 0"), and covers 2048x64 with a 1x3000 picture at 2048x6144000 for
    "crop". Fitted pictures are the generation's size, and no resize on the way is over 100 times it."""
    from lib_depth2img.webui.pictures import fit_picture

    limit = _ResizeLimit(monkeypatch, 0)
    for height, width in THIN:
        for target_height, target_width in TARGETS:
            limit.pixels = 100 * target_width * target_height
            assert fit_picture(mode, _pil(height, width), target_width, target_height).size == (target_width,
                                                                                               target_height)


def test_an_ordinary_picture_for_depth_is_fitted_as_the_webui_fits_it(webui):
    from modules import images

    from lib_depth2img.webui.pictures import fit_picture

    for mode in (0, 1, 2):
        for picture in (_pil(128, 192), _pil(64, 512), _pil(600, 90)):  # up to 8:1 against 128x128
            expected = images.resize_image(mode, picture, 128, 128)
            assert np.array_equal(np.asarray(fit_picture(mode, picture, 128, 128)), np.asarray(expected))


def test_a_thin_depth_map_is_cut_before_it_is_scaled(monkeypatch):
    """A 300x1 map covering 8x256 is scaled x256: the whole would be 76800x256 before the middle 8 rows are
    kept. The result is the whole's middle, and a 3000x1 map for 64x2048 (6144000x2048 whole) is fitted."""
    from lib_depth2img.user_depth import fit_depth_map

    ramp = torch.arange(300.0).view(1, 1, 300, 1)
    whole = torch.nn.functional.interpolate(ramp, size=(76800, 256), mode="bilinear", align_corners=False)
    assert torch.allclose(fit_depth_map(ramp, 8, 256, 1), whole[..., 38396:38404, :], atol=1e-4)
    _ResizeLimit(monkeypatch, 100 * 64 * 2048)
    assert fit_depth_map(torch.rand(1, 1, 3000, 1), 64, 2048, 1).shape == (1, 1, 64, 2048)


@pytest.mark.parametrize("fit", ["crop", "fill"])
def test_txt2img_and_its_preview_with_a_strip_for_depth(webui, depth_model, fit):
    from lib_depth2img.webui import preview

    encoded = _encoded(_pil(*STRIP))
    p = webui.processing.StableDiffusionProcessingTxt2Img(128, 128, script_args=[{"depth_picture": encoded,
                                                                                  "fit": fit}])
    webui.processing.process_images(p, [_script(webui, is_img2img=False)])
    conditioning = next(unet_input for name, unet_input in p.sampled_with if name == "first")[:, 4:]
    assert conditioning.shape == (1, 1, 16, 16) and torch.isfinite(conditioning).all()
    settings = DepthArgs(depth_picture=encoded, fit=fit).to_script_args()
    image, message = preview.preview_depth(-1, *[None] * len(preview.picture_inputs()), *settings, 128, 128)
    assert image is not None and image.size == (128, 128), message
