"""Our torch input preparation against the reference transform's recorded outputs."""

import pytest
import torch
from reference import load_reference, synthetic_batch

from lib_depth2img import Depth2ImgError
from lib_depth2img.transforms import (
    DPT_INPUT,
    MIDAS_V21_INPUT,
    MIDAS_V21_SMALL_INPUT,
    estimator_input_size,
    prepare_estimator_input,
)

SPECS = {"dpt_hybrid": DPT_INPUT, "dpt_large": DPT_INPUT, "midas_v21": MIDAS_V21_INPUT,
         "midas_v21_small": MIDAS_V21_SMALL_INPUT}
CASES = load_reference("midas-transform-cases.json")["cases"]


def _case_id(case):
    return f"{case['model_type']}-{case['input_height']}x{case['input_width']}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_shape_and_values_match_reference(case):
    images = synthetic_batch(case["input_height"], case["input_width"])
    output = prepare_estimator_input(images, SPECS[case["model_type"]])[0].double()
    assert list(output.shape) == case["output_shape"]
    assert output.mean().item() == pytest.approx(case["mean"], abs=1e-4)
    assert output.std(unbiased=False).item() == pytest.approx(case["std"], abs=1e-4)
    assert output.min().item() == pytest.approx(case["min"], abs=1e-4)
    assert output.max().item() == pytest.approx(case["max"], abs=1e-4)
    for entry in case["values_at"]:
        assert output[tuple(entry["index"])].item() == pytest.approx(entry["value"], abs=1e-4)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_target_size_rule(case):
    spec = SPECS[case["model_type"]]
    assert list(estimator_input_size(case["input_height"], case["input_width"], spec)) == case["output_shape"][1:]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_half_and_other_precisions_are_accepted(dtype):
    """OpenCV cannot resize float16 (the "src data type = 23" error); the torch transform can."""
    images = synthetic_batch(512, 768)
    reference = prepare_estimator_input(images, DPT_INPUT)
    output = prepare_estimator_input(images.to(dtype), DPT_INPUT)
    assert output.shape == reference.shape == (1, 3, 384, 576)
    assert output.dtype == torch.float32
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float64: 1e-6}[dtype]
    assert (output - reference).abs().max().item() < tolerance


def test_batch_is_prepared_image_by_image():
    first, second = synthetic_batch(512, 512), 1 - synthetic_batch(512, 512)
    output = prepare_estimator_input(torch.cat([first, second]), DPT_INPUT)
    assert torch.allclose(output[1], prepare_estimator_input(second, DPT_INPUT)[0])
    assert not torch.allclose(output[0], output[1])


@pytest.mark.parametrize("bad", [torch.zeros(3, 64, 64), torch.zeros(1, 4, 64, 64),
                                 torch.zeros(1, 3, 64, 64, dtype=torch.uint8), torch.zeros(0, 3, 64, 64)])
def test_wrong_input_is_a_clear_error(bad):
    with pytest.raises(Depth2ImgError):
        prepare_estimator_input(bad, DPT_INPUT)


@pytest.mark.parametrize(("height", "width", "expected"), [(512, 768, (518, 784)), (1000, 600, (868, 518)),
                                                           (518, 518, (518, 518)), (100, 100, (518, 518))])
def test_depth_anything_lower_bound_rule(height, width, expected):
    from lib_depth2img.transforms import DEPTH_ANYTHING_INPUT

    assert estimator_input_size(height, width, DEPTH_ANYTHING_INPUT) == expected
