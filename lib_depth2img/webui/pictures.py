"""The pictures depth is estimated from, as the WebUI's img2img ``init`` lays them out."""

from __future__ import annotations

import numpy as np
import torch
from modules import images
from modules.shared import opts
from PIL import Image

FILL_ORIGINAL = 1  # "Masked content: original": the only mode that keeps the picture under the mask


def pil_to_tensor(picture: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


def only_masked_crop(p) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the part "Inpaint area: Only masked" samples, or None for the whole picture."""
    return getattr(p, "paste_to", None) if p.image_mask is not None and p.inpaint_full_res else None


def untouched_pictures(p) -> torch.Tensor:
    """``p.init_images`` flattened, resized or cropped exactly as ``init`` does, but never filled."""
    crop = only_masked_crop(p)
    laid_out = []
    for picture in p.init_images:
        picture = images.flatten(picture, opts.img2img_background_color)
        if crop is not None:
            x, y, width, height = crop
            picture = images.resize_image(2, picture.crop((x, y, x + width, y + height)), p.width, p.height)
        elif p.resize_mode != 3:
            picture = images.resize_image(p.resize_mode, picture, p.width, p.height)
        laid_out.append(pil_to_tensor(picture))
    return torch.stack(laid_out)


def depth_pictures(p, source_image: torch.Tensor, from_original: bool) -> torch.Tensor:
    """``[N,3,H,W]`` in [0, 1], one per distinct init picture (a single picture is not repeated).

    ``source_image`` is what the WebUI hands its depth path: the batch in [-1, 1], with the
    masked area already filled unless "Masked content" is "original".
    """
    filled = p.image_mask is not None and p.inpainting_fill != FILL_ORIGINAL
    if filled and from_original:
        return untouched_pictures(p).to(source_image.device)
    distinct = 1 if len(p.init_images) == 1 else source_image.shape[0]
    return (source_image[:distinct].float() * 0.5 + 0.5).clamp(0, 1)
