"""Numbers recorded from ldm's MiDaSInference('dpt_hybrid') with rule-set weights, reproduced by our plain torch.

The fixture's input went through the reference transform (OpenCV INTER_CUBIC), so the forward
pass is checked on that exact input; the whole pipeline with our torch transform is checked too.
"""

import cv2
import numpy as np
import pytest
import torch
from reference import load_reference, synthetic_batch, synthetic_image

from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.depth import estimate_depth

FIXTURE = load_reference("midas-dpt_hybrid-parity.json")
CASES = FIXTURE["cases"]


def _reference_input(case) -> torch.Tensor:
    _, _, height, width = case["midas_in_shape"]
    image = cv2.resize(synthetic_image(case["input_height"], case["input_width"]), (width, height),
                       interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy((image - 0.5) / 0.5).permute(2, 0, 1)[None].float()


def _assert_matches(output: torch.Tensor, reference: dict, value_tolerance: float) -> None:
    output = output.double()
    scale = reference["max"] - reference["min"]
    for stat, value in (("mean", output.mean()), ("std", output.std(unbiased=False)),
                        ("max", output.max()), ("min", output.min())):
        assert value.item() == pytest.approx(reference[stat], rel=1e-4, abs=1e-4 * scale), stat
    for entry in reference["values_at"]:
        assert output[tuple(entry["index"])].item() == pytest.approx(entry["value"], abs=value_tolerance * scale)
    if "block_means_8x8" in reference:
        h, w = output.shape[-2:]
        blocks = output[0, 0].reshape(8, h // 8, 8, w // 8).mean(dim=(1, 3))
        expected = torch.tensor(reference["block_means_8x8"], dtype=torch.float64)
        assert (blocks - expected).abs().max().item() <= value_tolerance * scale


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['input_height']}x{c['input_width']}")
def test_forward_matches_reference(hybrid_estimator, case):
    with torch.inference_mode():
        output = hybrid_estimator(_reference_input(case)).unsqueeze(1)
    assert list(output.shape) == case["output_shape"]
    _assert_matches(output, case["float64"], value_tolerance=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['input_height']}x{c['input_width']}")
def test_conditioning_matches_training_rule(hybrid_estimator, case):
    """The reference output -> latent-size conditioning, with ldm's per-image normalisation."""
    expected = case["conditioning"]["float64"]
    with torch.inference_mode():
        depth = hybrid_estimator(_reference_input(case)).unsqueeze(1)
    conditioning = build_depth_conditioning(depth, expected["latent_size"])
    _assert_matches(conditioning, expected["ldm_get_input"], value_tolerance=1e-4)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['input_height']}x{c['input_width']}")
def test_whole_pipeline_with_torch_transform(hybrid_estimator, case):
    """Pictures in, conditioning out: our torch resize stands in for OpenCV's and stays within 1e-3."""
    expected = case["conditioning"]["float64"]
    images = synthetic_batch(case["input_height"], case["input_width"])
    depth = estimate_depth(hybrid_estimator, images, output_size=expected["latent_size"])
    conditioning = build_depth_conditioning(depth, expected["latent_size"])
    _assert_matches(conditioning, expected["ldm_get_input"], value_tolerance=1e-3)
    assert np.isfinite(conditioning.numpy()).all()


def test_a_changed_weight_fails_the_check(hybrid_estimator):
    """The check can fail: 10% more on one transformer weight puts the output out of tolerance."""
    case = min(CASES, key=lambda c: c["input_height"] * c["input_width"])
    weight = hybrid_estimator.state_dict()["pretrained.model.blocks.5.attn.proj.weight"]
    original = weight.clone()
    try:
        with torch.no_grad():
            weight.mul_(1.1)
        with torch.inference_mode():
            output = hybrid_estimator(_reference_input(case)).unsqueeze(1)
    finally:
        with torch.no_grad():
            weight.copy_(original)
    with pytest.raises(AssertionError):
        _assert_matches(output, case["float64"], value_tolerance=1e-4)
