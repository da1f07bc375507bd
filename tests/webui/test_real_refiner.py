"""Against a real WebUI v1.10.1 on CPU (opt-in; see conftest.py): a depth checkpoint as the refiner, both ways,
in img2img and txt2img.

The WebUI swaps the refiner in mid-sampling (sd_samplers_common.apply_refiner) and keeps the conditioning the
sampler started with; a plain SD2 model of the tiny depth model's shapes (make_tiny_depth_checkpoint.py --plain)
is the other half.

img2img encodes its init picture by sampling the VAE's posterior with the global torch generator
(ldm's ``get_first_stage_encoding``), which the run before reseeded at its noise and then advanced (loading a
checkpoint draws from it): an img2img run repeats exactly only after a run like it, so each comparison is
preceded by one. The tiny models' random VAEs are so wide that this alone changed a picture by 0.5 to 0.8/255 here.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_real_txt2img import _txt2img
from test_real_webui import SIZE, _b64, _decode, _expected_map, _img2img, _picture, _similar
from webui_server import build_checkpoint

from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_from_file

PLAIN = "tiny-plain"
STEPS = 4  # the switch at 0.5 leaves the refiner two steps


@pytest.fixture(scope="module")
def plain_checkpoint(webui):
    import os

    folder = webui.data_dir / "models" / "Stable-diffusion"
    checkpoint = build_checkpoint(os.environ["DEPTH2IMG_WEBUI_DIR"], folder, PLAIN, plain=True)
    assert inspect_checkpoint(checkpoint).is_depth is False  # a plain model, by our own reading of the file
    assert webui.post("/sdapi/v1/refresh-checkpoints", {}).status_code == 200
    return checkpoint


@pytest.fixture(scope="module")
def our_estimator(webui):
    """Our DPT with the depth checkpoint's own MiDaS weights: what the depth maps must equal."""
    depth_checkpoint = webui.data_dir / "models" / "Stable-diffusion" / f"{webui.checkpoint}.safetensors"
    return load_estimator_from_file(create_estimator("dpt_hybrid"), depth_checkpoint)


@pytest.fixture()
def left_as_found(webui, plain_checkpoint):
    """An ordinary generation (the loaded depth model, no refiner) gives the same picture after the test as
    before it: the refiner's switch and our part in it leave nothing behind."""
    def ordinary() -> np.ndarray:
        _img2img(webui, [_picture()], {})  # the run like it, see the module's docstring
        return _pixels(_img2img(webui, [_picture()], {}))

    before = ordinary()
    yield
    assert np.array_equal(ordinary(), before)


def _with_refiner(webui, base: str, refiner: str, settings: dict) -> dict:
    return _img2img(webui, [_picture()], settings, steps=STEPS, override_settings={"sd_model_checkpoint": base},
                    refiner_checkpoint=refiner, refiner_switch_at=0.5)


def _pixels(result: dict, index: int = 0) -> np.ndarray:
    return np.asarray(_decode(result["images"][index]).convert("RGB"), dtype=float)


def _expected(our_estimator, picture: Image.Image) -> np.ndarray:
    return _expected_map(our_estimator, picture.resize((SIZE, SIZE), Image.LANCZOS))  # square to square


def test_plain_base_then_depth_refiner_gets_depth_from_the_refiners_file(webui, left_as_found, our_estimator):
    _with_refiner(webui, PLAIN, webui.checkpoint, {"add_depth_to_results": True})
    result = _with_refiner(webui, PLAIN, webui.checkpoint, {"add_depth_to_results": True})
    assert len(result["images"]) == 2 and f"Depth2img refiner: {webui.checkpoint}" in result["info"]
    assert "Depth2img depth: init picture" in result["info"]
    assert f"Refiner: {webui.checkpoint}" in result["info"]  # the WebUI's own record that the switch happened
    assert _similar(_decode(result["images"][1]), _expected(our_estimator, _picture()))
    # The refiner's steps are conditioned on the depth: the run repeats exactly, and inverted depth changes it
    # (a little: the refiner has only the last, least noisy steps)
    again = _with_refiner(webui, PLAIN, webui.checkpoint, {"add_depth_to_results": True})
    inverted = _with_refiner(webui, PLAIN, webui.checkpoint, {"invert": True})
    difference = np.abs(_pixels(result) - _pixels(inverted)).mean()
    print(f"\nimg2img, plain base + depth refiner: inverted depth changes the picture by {difference:.3f}/255")
    assert np.array_equal(_pixels(result), _pixels(again)) and difference > 0


def test_depth_base_then_plain_refiner_keeps_the_bases_depth(webui, left_as_found, our_estimator):
    result = _with_refiner(webui, webui.checkpoint, PLAIN, {"add_depth_to_results": True})
    assert len(result["images"]) == 2 and "Depth2img refiner" not in result["info"]
    assert f"Refiner: {PLAIN}" in result["info"]
    assert _similar(_decode(result["images"][1]), _expected(our_estimator, _picture()))
    assert np.isfinite(_pixels(result)).all() and _pixels(result).std() > 0


def test_txt2img_plain_base_then_depth_refiner_gets_the_picture_for_depths_depth(webui, left_as_found,
                                                                                 our_estimator):
    refiner = {"steps": STEPS, "override_settings": {"sd_model_checkpoint": PLAIN},
               "refiner_checkpoint": webui.checkpoint, "refiner_switch_at": 0.5}
    result = _txt2img(webui, {"depth_picture": _b64(_picture()), "add_depth_to_results": True}, **refiner)
    assert len(result["images"]) == 2 and f"Depth2img refiner: {webui.checkpoint}" in result["info"]
    assert "Depth2img depth: picture for depth" in result["info"] and f"Refiner: {webui.checkpoint}" in result["info"]
    assert _similar(_decode(result["images"][1]), _expected(our_estimator, _picture()))
    again = _txt2img(webui, {"depth_picture": _b64(_picture()), "add_depth_to_results": True}, **refiner)
    inverted = _txt2img(webui, {"depth_picture": _b64(_picture()), "invert": True}, **refiner)
    difference = np.abs(_pixels(result) - _pixels(inverted)).mean()
    print(f"\ntxt2img, plain base + depth refiner: inverted depth changes the picture by {difference:.3f}/255")
    assert np.array_equal(_pixels(result), _pixels(again)) and difference > 0


def test_depth_refiner_with_depth_switched_off_stops_with_words_and_writes_nothing(webui, left_as_found):
    before = webui.output_files()
    response = webui.post("/sdapi/v1/img2img", {
        "init_images": [_b64(_picture())], "prompt": "a house", "steps": STEPS, "width": SIZE, "height": SIZE,
        "save_images": True, "override_settings": {"sd_model_checkpoint": PLAIN},
        "refiner_checkpoint": webui.checkpoint, "refiner_switch_at": 0.5,
        "alwayson_scripts": {"Depth-to-image": {"args": [{"enabled": False}]}}})
    assert response.status_code == 500
    assert response.json()["errors"] == (
        f"The refiner {webui.checkpoint} is a depth-to-image model: switch Depth-to-image on so that its steps get "
        "depth (through the API: \"enabled\": true), or pick another refiner.")
    assert webui.output_files() == before
