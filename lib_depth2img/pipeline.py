"""Pictures in, the depth model's conditioning out: the whole depth path of one generation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.depth import estimate_depth
from lib_depth2img.transforms import InputSpec, estimator_input_size


@dataclass(frozen=True)
class DepthConditioning:
    depth: torch.Tensor         # float32 [B,1,h,w] at the estimator's resolution, adjustments applied
    conditioning: torch.Tensor  # [B,1,H/8,W/8] in [-1, 1]: the UNet's fifth input channel


def invert_depth(depth: torch.Tensor) -> torch.Tensor:
    """Near becomes far within each map's own range, so values stay in the range they had."""
    low = depth.amin(dim=(-2, -1), keepdim=True)
    high = depth.amax(dim=(-2, -1), keepdim=True)
    return low + high - depth


def condition_pictures(estimator: nn.Module, pictures: torch.Tensor, latent_size: tuple[int, int], *,
                       input_spec: InputSpec | None = None, invert: bool = False,
                       device: torch.device | None = None, dtype: torch.dtype = torch.float32) -> DepthConditioning:
    """RGB ``[B,3,H,W]`` in [0, 1] -> depth and conditioning, each picture on its own.

    Depth stays at the estimator's resolution so the conditioning is resized once, straight
    to the latent size, exactly as in training.
    """
    spec = input_spec or estimator.input_spec
    native_size = estimator_input_size(pictures.shape[-2], pictures.shape[-1], spec)
    depth = estimate_depth(estimator, pictures, input_spec=spec, output_size=native_size, device=device)
    if invert:
        depth = invert_depth(depth)
    conditioning = build_depth_conditioning(depth, latent_size, dtype=dtype, device=pictures.device)
    return DepthConditioning(depth, conditioning)
