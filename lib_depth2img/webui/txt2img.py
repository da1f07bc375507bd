"""txt2img with a depth model: the depth comes from a map or a picture, fitted to the generation's size,
and each pass of the WebUI's txt2img (the first, and Hires fix's second) gets it at the size of its latent.

The WebUI asks ``p.txt2img_image_conditioning(x)`` for the first pass and for a second pass after a latent
upscaler, and ``p.img2img_image_conditioning(decoded, latent)`` for a second pass after a picture upscaler
(or a latent one with an inpainting mask weight below 1): both are shadowed for the whole generation, so no
pass re-estimates depth from the decoded first pass, as the WebUI's own depth path would.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.picture_files import open_picture
from lib_depth2img.pipeline import DepthConditioning
from lib_depth2img.user_depth import RESIZE_MODE_OF_FIT
from lib_depth2img.webui.pictures import fit_picture, pil_to_tensor

CONDITIONING_METHODS = ("txt2img_image_conditioning", "img2img_image_conditioning")


def fitted_picture(p, args: DepthArgs) -> torch.Tensor:
    """The picture for depth as ``[1,3,H,W]`` in [0, 1], fitted to the generation's size as the WebUI fits
    img2img's pictures (crop, stretch or fill)."""
    picture = fit_picture(RESIZE_MODE_OF_FIT[args.fit], open_picture(args.depth_picture), p.width, p.height)
    return pil_to_tensor(picture)[None]


def _hires_kept_part(p, conditioning: torch.Tensor) -> torch.Tensor:
    """Hires fix to a size of another aspect ratio upscales past it, then crops the latent: crop alike."""
    top, left = getattr(p, "truncate_y", 0), getattr(p, "truncate_x", 0)
    if not getattr(p, "is_hr_pass", False) or not (top or left):
        return conditioning
    height, width = conditioning.shape[-2:]
    return conditioning[..., top // 2:height - (top + 1) // 2, left // 2:width - (left + 1) // 2]


def take_over(p, depth_of: Callable[[tuple[int, int], torch.dtype], DepthConditioning], keep) -> None:
    """Shadows both conditioning methods for the whole generation. ``depth_of(latent_size, dtype)`` makes the
    depth once, at the first pass; ``keep`` receives it (for the results)."""
    made: list[DepthConditioning] = []

    def conditioning(latent: torch.Tensor) -> torch.Tensor:
        size = tuple(latent.shape[-2:])
        if not made:
            made.append(depth_of(size, latent.dtype))
            keep(made[0])
            result = made[0].conditioning
        else:  # the same depth at this pass's size, from the depth before it was resized to a latent
            result = build_depth_conditioning(made[0].depth, size, dtype=latent.dtype)
        result = result.expand(latent.shape[0], -1, -1, -1) if result.shape[0] == 1 else result
        return _hires_kept_part(p, result.to(device=latent.device, dtype=latent.dtype))

    p.txt2img_image_conditioning = lambda x, *_args, **_kwargs: conditioning(x)
    p.img2img_image_conditioning = lambda _source, latent, *_args, **_kwargs: conditioning(latent)


def depth_for_results(p, depth: torch.Tensor) -> torch.Tensor:
    """The depth as the final pass saw it: at Hires fix's size and cropped as its latent, else as it is."""
    if not getattr(p, "enable_hr", False) or not getattr(p, "hr_upscale_to_x", 0):
        return depth
    upscaled = F.interpolate(depth.float(), size=(p.hr_upscale_to_y, p.hr_upscale_to_x), mode="bilinear",
                             align_corners=False)
    top, left = getattr(p, "truncate_y", 0), getattr(p, "truncate_x", 0)  # in latent pixels of 8 pixels
    height, width = upscaled.shape[-2:]
    return upscaled[..., 8 * (top // 2):height - 8 * ((top + 1) // 2), 8 * (left // 2):width - 8 * ((left + 1) // 2)]
