"""Against a real WebUI v1.10.1 on CPU (opt-in; see conftest.py): a depth checkpoint as the refiner, both ways.

The WebUI swaps the refiner in mid-sampling (sd_samplers_common.apply_refiner) and keeps the conditioning the
sampler started with; a plain SD2 model of the tiny depth model's shapes (make_tiny_depth_checkpoint.py --plain)
is the other half.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_real_webui import SIZE, _decode, _expected_map, _img2img, _picture, _similar
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


def _with_refiner(webui, base: str, refiner: str, settings: dict) -> dict:
    return _img2img(webui, [_picture()], settings, steps=STEPS, override_settings={"sd_model_checkpoint": base},
                    refiner_checkpoint=refiner, refiner_switch_at=0.5)


def _pixels(result: dict, index: int = 0) -> np.ndarray:
    return np.asarray(_decode(result["images"][index]).convert("RGB"), dtype=float)


def test_plain_base_then_depth_refiner_gets_depth_from_the_refiners_file(webui, plain_checkpoint, our_estimator):
    result = _with_refiner(webui, PLAIN, webui.checkpoint, {"add_depth_to_results": True})
    assert len(result["images"]) == 2 and f"Depth2img refiner: {webui.checkpoint}" in result["info"]
    assert f"Refiner: {webui.checkpoint}" in result["info"]  # the WebUI's own record that the switch happened
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, _picture().resize((SIZE, SIZE),
                                                                                                  Image.LANCZOS)))
    # The refiner's steps are conditioned on the depth: the run repeats exactly, and inverted depth changes it
    # (a little: the refiner has only the last, least noisy steps)
    again = _with_refiner(webui, PLAIN, webui.checkpoint, {"add_depth_to_results": True})
    inverted = _with_refiner(webui, PLAIN, webui.checkpoint, {"invert": True})
    difference = np.abs(_pixels(result) - _pixels(inverted)).mean()
    print(f"\nplain base + depth refiner: inverted depth changes the picture by {difference:.2f}/255 on average")
    assert np.array_equal(_pixels(result), _pixels(again)) and difference > 0


def test_depth_base_then_plain_refiner_keeps_the_bases_depth(webui, plain_checkpoint, our_estimator):
    result = _with_refiner(webui, webui.checkpoint, PLAIN, {"add_depth_to_results": True})
    assert len(result["images"]) == 2 and "Depth2img refiner" not in result["info"]
    assert f"Refiner: {PLAIN}" in result["info"]
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, _picture().resize((SIZE, SIZE),
                                                                                                  Image.LANCZOS)))
    assert np.isfinite(_pixels(result)).all() and _pixels(result).std() > 0
