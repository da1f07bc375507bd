"""Every estimator's whole path on a CUDA GPU, in float32, float16 and bfloat16, against the official code.

CI has no GPU, so these skip there; where one is, ``python -m pytest tests/test_gpu.py``. The expected
values are the parity fixtures' (the official networks and transforms, in float64), the weights the
fixtures' rule, as in test_parity_estimators. The picture is prepared on the CPU in float32, as the WebUI
hands it over; the forward runs on the GPU in the estimator's dtype; the depth comes back as float32.

Tolerances are of the output's range. With TF32 off, float32 must match as closely as on the CPU: this
proves the GPU path itself (measured on an H100, torch 2.11: at most 4e-5). With it on (torch's default
for convolutions, and the WebUI's for matrix products too), products keep 10 bits, as in float16;
bfloat16 keeps 7. Measured there, the transformers and DPT-Large deviate by at most 1.5e-3 (TF32),
4.7e-3 (float16) and 3.2e-2 (bfloat16). The two convolutional networks, with the rule weights, amplify
rounding far more (MiDaS v2.1 small's perturbation test moves 390 times the tolerance where the
transformers move 5 to 12): MiDaS v2.1 small deviated by 2.4e-2, 9.4e-2 and 0.32, DPT-Hybrid (whose ResNet
feeds the decoder directly) by 3.2e-2, 1.4e-2 and 0.11; ldm's DPT-Hybrid differs from ours there by as
much (tests/benchmark_reference.py on the GPU). They get bounds ten and five times wider, and in
bfloat16 those catch a broken path, not a slightly worse one.
"""

from __future__ import annotations

import copy
import gc

import pytest
import torch
from reference import load_reference, reference_layout
from test_parity import CASES as HYBRID_CASES
from test_parity import _reference_input
from test_parity_estimators import CASES, ESTIMATORS, _case_spec, _pictures, rule_state

from lib_depth2img.depth import estimate_depth
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (CI has none)")

# (dtype, TF32 allowed) -> tolerance
TOLERANCES = {(torch.float32, False): 1e-4, (torch.float32, True): 1e-2, (torch.float16, True): 1e-2,
              (torch.bfloat16, True): 5e-2}
ROUNDING_SENSITIVE = {"midas_v21_small": 10, "dpt_hybrid": 5}


def deviation(output: torch.Tensor, expected: dict) -> float:
    """The largest gap between ``output`` [1,1,h,w] and a fixture summary (statistics, values at fixed
    indices, 8x8 block means), as a fraction of the expected output's range."""
    assert list(output.shape) == expected["output_shape"]
    truth, output = expected["float64"], output.double()
    scale = truth["max"] - truth["min"]
    gaps = [abs(value.item() - truth[stat]) for stat, value in (
        ("mean", output.mean()), ("std", output.std(unbiased=False)), ("max", output.max()), ("min", output.min()))]
    gaps += [abs(output[tuple(entry["index"])].item() - entry["value"]) for entry in truth["values_at"]]
    h, w = output.shape[-2:]
    gaps += [abs(output[0, 0, i * h // 8:(i + 1) * h // 8, j * w // 8:(j + 1) * w // 8].mean().item()
                 - truth["block_means_8x8"][i][j]) for i in range(8) for j in range(8)]
    return max(gaps) / scale


def on_the_gpu(estimator: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """A copy on the GPU in ``dtype``, cast from the float32 weights (not from another half's rounding)."""
    return copy.deepcopy(estimator).to(device="cuda", dtype=dtype)


def hybrid_deviations(estimator: torch.nn.Module, dtype: torch.dtype) -> list[float]:
    """DPT-Hybrid's network on the reference transform's input (its fixture records the network only)."""
    estimator = on_the_gpu(estimator, dtype)
    deviations = []
    for case in HYBRID_CASES:
        with torch.inference_mode():
            output = estimator(_reference_input(case).to(device="cuda", dtype=dtype)).unsqueeze(1).float().cpu()
        assert torch.isfinite(output).all()
        deviations.append(deviation(output, {"output_shape": case["output_shape"], "float64": case["float64"]}))
    return deviations


@pytest.fixture(scope="module", params=list(ESTIMATORS))
def on_gpu(request):
    """(estimator name, fixture, our float32 estimator with the rule weights): one alive at a time."""
    name = request.param
    fixture_file, layout_file, _ = ESTIMATORS[name]
    estimator = create_estimator(name)
    load_estimator_weights(estimator, rule_state(reference_layout(layout_file)))
    yield name, load_reference(fixture_file), estimator
    del estimator
    gc.collect()
    torch.cuda.empty_cache()


def whole_path_deviations(name: str, fixture: dict, estimator: torch.nn.Module, dtype: torch.dtype) -> list[float]:
    estimator = on_the_gpu(estimator, dtype)
    deviations = []
    for index in CASES:
        case = fixture["cases"][index]
        pictures = _pictures(name, case["picture_height"], case["picture_width"])
        depth = estimate_depth(estimator, pictures, input_spec=_case_spec(name, case))
        assert depth.dtype == torch.float32 and depth.device.type == "cpu" and torch.isfinite(depth).all()
        deviations.append(deviation(depth, case["pipeline"]))
    return deviations


@pytest.fixture
def tf32(request):
    """Sets whether CUDA may use TF32, as the test asks, and restores torch's setting after it."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = request.param
    yield request.param
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


DTYPES = pytest.mark.parametrize(("dtype", "tf32"), list(TOLERANCES), indirect=["tf32"],
                                 ids=["float32", "float32-tf32", "float16", "bfloat16"])


@DTYPES
def test_dpt_hybrid_on_the_gpu_matches_ldm(hybrid_estimator, dtype, tf32):
    tolerance = TOLERANCES[dtype, tf32] * (ROUNDING_SENSITIVE.get("dpt_hybrid", 1) if tf32 else 1)
    assert max(hybrid_deviations(hybrid_estimator, dtype)) <= tolerance


@DTYPES
def test_whole_path_on_the_gpu_matches_the_official_one(on_gpu, dtype, tf32):
    name, fixture, estimator = on_gpu
    tolerance = TOLERANCES[dtype, tf32] * (ROUNDING_SENSITIVE.get(name, 1) if tf32 else 1)
    assert max(whole_path_deviations(name, fixture, estimator, dtype)) <= tolerance
