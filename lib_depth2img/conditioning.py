"""The depth model's extra input channel, by the rule it was trained with (ldm's ``LatentDepth2ImageDiffusion``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lib_depth2img.errors import Depth2ImgError


def build_depth_conditioning(depth: torch.Tensor, latent_size: tuple[int, int], *,
                             dtype: torch.dtype = torch.float32,
                             device: torch.device | str | None = None) -> torch.Tensor:
    """Depth ``[B,1,H,W]`` (or ``[B,H,W]``) -> conditioning ``[B,1,h,w]`` in [-1, 1].

    Bicubic resize to the latent size, then per image ``2 * (d - min) / (max - min + 0.001) - 1``.
    Each image is normalised on its own (the WebUI's native path normalises over the whole batch),
    and a flat map gives a flat -1, never 0/0.
    """
    if depth.ndim == 3:
        depth = depth.unsqueeze(1)
    if depth.ndim != 4 or depth.shape[1] != 1 or depth.shape[0] == 0:
        raise Depth2ImgError(f"Expected a depth batch [batch, 1, height, width], got {tuple(depth.shape)}.")
    height, width = (int(s) for s in latent_size)
    if height < 1 or width < 1:
        raise Depth2ImgError(f"The latent size must be positive, got {tuple(latent_size)}.")
    # float32 arithmetic: the +0.001 and the min/max are lost in half precision.
    d = torch.nan_to_num(depth.float())
    # Bicubic weights do not sum to exactly 1 in float32, and the small denominator would magnify
    # that rounding noise on a flat map; such a map is flat by definition.
    flat = d.amax(dim=(1, 2, 3), keepdim=True) == d.amin(dim=(1, 2, 3), keepdim=True)
    if tuple(d.shape[-2:]) != (height, width):
        d = F.interpolate(d, size=(height, width), mode="bicubic", align_corners=False)
    low = d.amin(dim=(1, 2, 3), keepdim=True)
    high = d.amax(dim=(1, 2, 3), keepdim=True)
    conditioning = 2.0 * (d - low) / (high - low + 0.001) - 1.0
    # Only ranges beyond float32 (inf - inf) can produce NaN here; they become the flat map.
    conditioning = torch.nan_to_num(conditioning, nan=-1.0).clamp_(-1.0, 1.0).masked_fill_(flat, -1.0)
    return conditioning.to(device=device if device is not None else depth.device, dtype=dtype)
