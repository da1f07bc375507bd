"""Against a real WebUI v1.10.1 on CPU (opt-in; see conftest.py): txt2img from a depth map or a picture,
Hires fix, img2img's picture for depth, and the depth endpoint, over the API."""

from __future__ import annotations

import base64

import cv2
import numpy as np
import pytest
from PIL import Image
from test_real_webui import (
    SIZE,
    _b64,
    _decode,
    _expected_map,
    _img2img,
    _picture,
    _similar,
    depth_checkpoint,
    our_estimator,
)

__all__ = ["depth_checkpoint", "our_estimator"]  # fixtures


def _stripe_map() -> str:
    """16 bits, 64x256, black but for a white stripe of columns 112-127. Cropped to 64x64 it keeps columns
    96-159, with the stripe at 16-31 of those: the second quarter of the width."""
    values = np.zeros((64, 256), dtype=np.uint16)
    values[:, 112:128] = 65535
    return base64.b64encode(cv2.imencode(".png", values)[1].tobytes()).decode()


def _txt2img(webui, settings, **extra):
    payload = {"prompt": "a house by a lake", "seed": 1234, "steps": 2, "width": SIZE, "height": SIZE,
               "sampler_name": "Euler", "cfg_scale": 5, **extra,
               "alwayson_scripts": {"Depth-to-image": {"args": [settings]}}}
    response = webui.post("/sdapi/v1/txt2img", payload)
    assert response.status_code == 200, response.text
    return response.json()


def _pixels(result: dict) -> np.ndarray:
    """The first picture's pixels: the PNGs differ in their infotext whenever the settings do."""
    return np.asarray(_decode(result["images"][0]).convert("RGB"))


def _stripe_columns(depth: Image.Image) -> np.ndarray:
    """Which columns of the depth map are white top to bottom, as fractions of its width."""
    pixels = np.asarray(depth.convert("L"), dtype=np.float64)
    return np.flatnonzero(pixels.min(axis=0) > 200) / pixels.shape[1]


def test_txt2img_with_a_depth_map_and_the_map_in_the_results(webui):
    result = _txt2img(webui, {"depth_source": "upload", "depth_map": _stripe_map(), "add_depth_to_results": True})
    assert len(result["images"]) == 2 and "Depth2img depth: map" in result["info"]
    assert "Depth2img fit: crop" in result["info"]
    columns = _stripe_columns(_decode(result["images"][1]))
    assert columns.min() >= 0.24 and columns.max() <= 0.51 and len(columns) >= 0.2 * SIZE
    again = _txt2img(webui, {"depth_source": "upload", "depth_map": _stripe_map()})
    assert np.array_equal(_pixels(again), _pixels(result))  # same seed, same map: same picture
    stretched = _txt2img(webui, {"depth_source": "upload", "depth_map": _stripe_map(), "fit": "stretch"})
    assert not np.array_equal(_pixels(stretched), _pixels(result))  # the fit reaches the model


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_hires_fix_second_pass_keeps_the_map(webui, upscaler):
    settings = {"depth_source": "upload", "depth_map": _stripe_map(), "add_depth_to_results": True}
    result = _txt2img(webui, settings, enable_hr=True, hr_scale=2, hr_upscaler=upscaler, hr_second_pass_steps=2,
                      denoising_strength=0.7)
    picture, depth = _decode(result["images"][0]), _decode(result["images"][1])
    assert picture.size == depth.size == (2 * SIZE, 2 * SIZE)
    columns = _stripe_columns(depth)  # the map at the hires size: the same stripe, twice as many columns
    assert columns.min() >= 0.24 and columns.max() <= 0.51 and len(columns) >= 0.2 * 2 * SIZE
    other = _txt2img(webui, {**settings, "invert": True}, enable_hr=True, hr_scale=2, hr_upscaler=upscaler,
                     hr_second_pass_steps=2, denoising_strength=0.7)
    assert not np.array_equal(_pixels(other), _pixels(result))


def test_txt2img_with_a_reference_picture(webui, our_estimator):
    picture = _picture()
    result = _txt2img(webui, {"depth_picture": _b64(picture), "add_depth_to_results": True})
    assert "Depth2img depth: picture for depth" in result["info"]
    fitted = picture.resize((SIZE, SIZE), Image.LANCZOS)  # square to square: the crop is a plain resize
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, fitted))
    flipped = _txt2img(webui, {"depth_picture": _b64(_picture(flip=True))})
    assert not np.array_equal(_pixels(flipped), _pixels(result))


def test_img2img_with_a_separate_picture_for_depth(webui):
    colours = _picture()
    first = _img2img(webui, [colours], {"depth_picture": _b64(_picture(flip=True))})
    same = _img2img(webui, [colours], {"depth_picture": _b64(_picture(flip=True))})
    other = _img2img(webui, [colours], {"depth_picture": _b64(_picture(size=96))})
    own = _img2img(webui, [colours], {})
    assert np.array_equal(_pixels(first), _pixels(same))
    assert not np.array_equal(_pixels(first), _pixels(other)) and not np.array_equal(_pixels(first), _pixels(own))
    assert "Depth2img depth: picture for depth" in first["info"]


def test_depth_endpoint_in_8_and_16_bits(webui, our_estimator):
    picture = _picture()
    answer = webui.post("/depth2img/v1/depth", {"image": _b64(picture), "width": SIZE})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["estimator"] == "dpt_hybrid" and (body["width"], body["height"]) == (SIZE, SIZE)
    eight = _decode(body["image"])
    assert eight.mode == "L" and _similar(eight, _expected_map(our_estimator, picture))
    body = webui.post("/depth2img/v1/depth", {"image": _b64(picture), "bits": 16}).json()
    sixteen = _decode(body["image"])
    assert sixteen.mode.startswith("I") and sixteen.size == picture.size and body["cached"] is True
    assert len(np.unique(np.asarray(sixteen))) > 256


@pytest.mark.parametrize(("payload", "status"), [
    ({"image": "not base64!"}, 400), ({"bits": 8}, 422), ({"image": "{picture}", "bits": 4}, 422),
    ({"image": "{picture}", "source": "upload"}, 422), ({"image": "{picture}", "near": 2}, 422),
    ({"image": "{picture}", "source": "depth_anything_v2_vitl"}, 400),
])
def test_depth_endpoint_errors(webui, payload, status):
    payload = {k: _b64(_picture()) if v == "{picture}" else v for k, v in payload.items()}
    answer = webui.post("/depth2img/v1/depth", payload)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_depth_endpoint_in_the_docs(webui):
    schema = webui.get("/openapi.json").json()
    request = schema["components"]["schemas"]["Depth2ImgDepthRequest"]["properties"]
    assert {"image", "source", "invert", "near", "far", "gamma", "blur", "width", "height", "bits"} <= request.keys()
