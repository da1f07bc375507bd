"""Pictures or a person's depth map in, the depth model's conditioning out: the depth path of one generation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lib_depth2img.adjustments import DepthAdjustments, adjust_depth
from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.depth import estimate_depth
from lib_depth2img.depth_cache import DepthCache
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.transforms import InputSpec, estimator_input_size
from lib_depth2img.user_depth import fit_depth_map

NO_ADJUSTMENTS = DepthAdjustments()


@dataclass(frozen=True)
class DepthConditioning:
    depth: torch.Tensor         # float32 [B,1,h,w], adjustments applied: what a preview shows
    conditioning: torch.Tensor  # [B,1,H/8,W/8] in [-1, 1]: the UNet's fifth input channel


def condition_pictures(estimator: nn.Module, pictures: torch.Tensor, latent_size: tuple[int, int], *,
                       input_spec: InputSpec | None = None, adjustments: DepthAdjustments = NO_ADJUSTMENTS,
                       device: torch.device | None = None, dtype: torch.dtype = torch.float32,
                       cache: DepthCache | None = None) -> DepthConditioning:
    """RGB ``[B,3,H,W]`` in [0, 1] -> depth and conditioning, each picture on its own.

    Depth stays at the estimator's resolution so the conditioning is resized once, straight
    to the latent size, exactly as in training.
    """
    depth = depth_of_pictures(estimator, pictures, input_spec=input_spec, adjustments=adjustments, device=device,
                              cache=cache)
    conditioning = build_depth_conditioning(depth, latent_size, dtype=dtype, device=pictures.device)
    return DepthConditioning(depth, conditioning)


def depth_of_pictures(estimator: nn.Module, pictures: torch.Tensor, *, input_spec: InputSpec | None = None,
                      adjustments: DepthAdjustments = NO_ADJUSTMENTS, device: torch.device | None = None,
                      cache: DepthCache | None = None) -> torch.Tensor:
    """RGB ``[B,3,H,W]`` in [0, 1] -> float32 depth ``[B,1,h,w]`` at the estimator's own resolution, adjusted:
    what ``build_depth_conditioning`` resizes once, straight to a latent size, as in training."""
    spec = input_spec or estimator.input_spec
    native_size = estimator_input_size(pictures.shape[-2], pictures.shape[-1], spec)
    if cache is not None:
        depth = cache.estimate(estimator, pictures, input_spec=spec, output_size=native_size, device=device)
    else:
        depth = estimate_depth(estimator, pictures, input_spec=spec, output_size=native_size, device=device)
    return adjust_depth(depth, adjustments)


def condition_latent_batch(depth: torch.Tensor, latent_batch: int, latent_size: tuple[int, int], *,
                           dtype: torch.dtype = torch.float32,
                           device: torch.device | str | None = None) -> torch.Tensor:
    """Depth ``[B,1,H,W]`` (or ``[B,H,W]``) -> conditioning ``[latent_batch,1,h,w]``: each picture of the batch
    its own map, or one map for all of them."""
    conditioning = build_depth_conditioning(depth, latent_size, dtype=dtype, device=device)  # checks the shape
    maps = conditioning.shape[0]
    if maps not in (1, latent_batch):
        raise Depth2ImgError(f"The depth holds {maps} maps and the latent {latent_batch} pictures: give one depth "
                             "map for all the pictures, or one for each.")
    return conditioning.expand(latent_batch, -1, -1, -1).contiguous() if maps == 1 else conditioning


def condition_depth_map(depth_map: torch.Tensor, picture_size: tuple[int, int], latent_size: tuple[int, int], *,
                        resize_mode: int = 0, adjustments: DepthAdjustments = NO_ADJUSTMENTS,
                        dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> DepthConditioning:
    """A person's depth map ``[1,1,h,w]`` (white = near) -> depth fitted to the picture, and conditioning."""
    depth = adjust_depth(fit_depth_map(depth_map.float(), *picture_size, resize_mode), adjustments)
    conditioning = build_depth_conditioning(depth, latent_size, dtype=dtype, device=device or depth_map.device)
    return DepthConditioning(depth, conditioning)
