"""estimate_depth: one batched forward, in the estimator's dtype and device, per-image results."""

import copy

import pytest
import torch
from reference import synthetic_batch

from lib_depth2img import Depth2ImgError
from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.depth import estimate_depth


class CountingForwards:
    def __init__(self, module):
        self.calls, self.batch_sizes = 0, []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.calls += 1
        self.batch_sizes.append(inputs[0].shape[0])


@pytest.fixture()
def two_pictures():
    first = synthetic_batch(256, 384)
    second = torch.flip(first, dims=[-1]).roll(40, dims=-2) * torch.tensor([0.2, 1.0, 0.6]).view(1, 3, 1, 1)
    return torch.cat([first, second])


def test_output_is_float32_at_picture_size(tiny_hybrid):
    images = synthetic_batch(200, 300)
    depth = estimate_depth(tiny_hybrid, images)
    assert depth.shape == (1, 1, 200, 300)
    assert depth.dtype == torch.float32
    assert torch.isfinite(depth).all()


def test_a_batch_is_one_forward_and_gives_each_picture_its_own_depth(tiny_hybrid, two_pictures):
    counter = CountingForwards(tiny_hybrid)
    try:
        depth = estimate_depth(tiny_hybrid, two_pictures, output_size=(32, 48))
    finally:
        counter.handle.remove()
    assert counter.calls == 1 and counter.batch_sizes == [2]
    alone = estimate_depth(tiny_hybrid, two_pictures[1:], output_size=(32, 48))
    # Channels-last convolutions on CPU pick their kernel by batch size: float32 rounding differs by up to
    # about 5e-5 of the depth range (the parity tolerance is 1e-4), far below a difference between pictures.
    assert (depth[1:] - alone).abs().max() <= 1e-4 * (alone.max() - alone.min())
    conditioning = build_depth_conditioning(depth, (32, 48))
    assert not torch.allclose(conditioning[0], conditioning[1], atol=1e-2)


@pytest.mark.parametrize(("input_dtype", "mean_error"), [(torch.float16, 0.005), (torch.bfloat16, 0.02)])
def test_half_precision_pictures_into_a_float32_estimator(tiny_hybrid, input_dtype, mean_error):
    """Reduced-precision pictures run and give the float32 depth up to their own rounding."""
    images = synthetic_batch(256, 256)
    reference = estimate_depth(tiny_hybrid, images)
    depth = estimate_depth(tiny_hybrid, images.to(input_dtype))
    assert depth.dtype == torch.float32
    scale = (reference.max() - reference.min()).item()
    assert (depth - reference).abs().mean().item() < mean_error * scale
    assert torch.corrcoef(torch.stack([depth.flatten(), reference.flatten()]))[0, 1] > 0.97


def test_estimator_in_bfloat16_gets_its_input_cast(tiny_hybrid):
    """The MPS "Input type and weight type should be the same" bug: float32 input, reduced-precision weights."""
    estimator = copy.deepcopy(tiny_hybrid).to(torch.bfloat16)  # a copy: the round trip would lose precision
    depth = estimate_depth(estimator, synthetic_batch(128, 128))
    assert depth.dtype == torch.float32 and torch.isfinite(depth).all()


def test_flat_picture_gives_finite_flat_conditioning(tiny_hybrid):
    flat = torch.full((1, 3, 128, 128), 0.5)
    conditioning = build_depth_conditioning(estimate_depth(tiny_hybrid, flat), (16, 16))
    assert torch.isfinite(conditioning).all()
    assert conditioning.min() >= -1 and conditioning.max() <= 1


def test_module_without_input_spec_needs_one(tiny_hybrid):
    bare = torch.nn.Sequential(torch.nn.Conv2d(3, 1, 1))
    with pytest.raises(Depth2ImgError, match="input_spec"):
        estimate_depth(bare, synthetic_batch(64, 64))
    depth = estimate_depth(bare, synthetic_batch(64, 64), input_spec=tiny_hybrid.input_spec)
    assert depth.shape == (1, 1, 64, 64)
