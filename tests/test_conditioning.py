"""The conditioning rule, by hand-computed values and by properties over random sizes and dtypes."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lib_depth2img import Depth2ImgError
from lib_depth2img.conditioning import build_depth_conditioning


def test_hand_computed_values_at_latent_size():
    depth = torch.tensor([[0.0, 1.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    expected = 2 * (depth - 0.0) / (4.0 - 0.0 + 0.001) - 1
    assert torch.allclose(build_depth_conditioning(depth, (2, 2)), expected)


def test_each_image_is_normalised_on_its_own():
    near = torch.linspace(0, 1, 64).view(1, 1, 8, 8)
    far = near * 100 + 50
    conditioning = build_depth_conditioning(torch.cat([near, far]), (8, 8))
    assert torch.allclose(conditioning[0], build_depth_conditioning(near, (8, 8))[0])
    assert conditioning[1].min().item() == pytest.approx(-1.0)
    assert conditioning[1].max().item() == pytest.approx(1.0, abs=1e-4)
    assert conditioning[0].max().item() == pytest.approx(2 / 1.001 - 1, abs=1e-6)


def test_flat_depth_is_flat_not_nan():
    conditioning = build_depth_conditioning(torch.full((2, 1, 16, 16), 3.0), (4, 4))
    assert torch.equal(conditioning, torch.full((2, 1, 4, 4), -1.0))


def test_resize_is_bicubic_without_corner_alignment():
    depth = torch.rand(1, 1, 40, 24, generator=torch.Generator().manual_seed(0))
    resized = torch.nn.functional.interpolate(depth, size=(5, 3), mode="bicubic", align_corners=False)
    low, high = resized.min(), resized.max()
    assert torch.allclose(build_depth_conditioning(depth, (5, 3)), 2 * (resized - low) / (high - low + 0.001) - 1)


def test_dtype_and_device_are_the_callers():
    conditioning = build_depth_conditioning(torch.rand(1, 1, 8, 8), (4, 4), dtype=torch.float16, device="cpu")
    assert conditioning.dtype == torch.float16 and conditioning.device.type == "cpu"


def test_three_dimensional_depth_is_accepted_and_bad_shapes_are_not():
    assert build_depth_conditioning(torch.rand(2, 8, 8), (4, 4)).shape == (2, 1, 4, 4)
    with pytest.raises(Depth2ImgError):
        build_depth_conditioning(torch.rand(2, 3, 8, 8), (4, 4))
    with pytest.raises(Depth2ImgError):
        build_depth_conditioning(torch.rand(1, 1, 8, 8), (0, 4))


DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float64": torch.float64}


@settings(max_examples=150, deadline=None)
@given(
    depth=arrays(np.float64, st.tuples(st.integers(1, 3), st.just(1), st.integers(1, 24), st.integers(1, 24)),
                 elements=st.floats(-1e4, 1e4, allow_nan=False)),
    latent=st.tuples(st.integers(1, 20), st.integers(1, 20)),
    dtype_name=st.sampled_from(sorted(DTYPES)),
)
def test_always_finite_in_range_and_independent_per_image(depth, latent, dtype_name):
    tensor = torch.from_numpy(depth).to(DTYPES[dtype_name])
    conditioning = build_depth_conditioning(tensor, latent)
    assert conditioning.shape == (depth.shape[0], 1, *latent)
    assert torch.isfinite(conditioning).all()
    assert conditioning.min() >= -1 and conditioning.max() <= 1
    assert torch.allclose(conditioning.amin(dim=(1, 2, 3)), torch.full((depth.shape[0],), -1.0))
    last_alone = build_depth_conditioning(tensor[-1:], latent)
    assert torch.equal(conditioning[-1:], last_alone)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e30, 1e30, allow_nan=False), st.sampled_from(sorted(DTYPES)))
def test_constant_maps_of_any_value_and_dtype_are_flat(value, dtype_name):
    tensor = torch.full((1, 1, 6, 7), value, dtype=torch.float64).to(DTYPES[dtype_name])
    assert torch.equal(build_depth_conditioning(tensor, (3, 3)), torch.full((1, 1, 3, 3), -1.0))
