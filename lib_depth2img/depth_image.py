"""Depth maps as pictures people can look at and exchange: 8-bit and 16-bit grayscale, white = near."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.output_files import replacing_file
from lib_depth2img.picture_data import checked_picture

_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's convert("L")
_BAND_ROWS = 256


def _single_map(depth: torch.Tensor) -> torch.Tensor:
    """The map as float32 ``[H,W]`` stretched over [0, 1]."""
    levels = depth.detach().float().cpu()
    # The last two dimensions are the map's: squeeze() would also drop the sides of a 1x1 or 1xN picture's map.
    if levels.ndim < 2 or math.prod(levels.shape[:-2]) != 1 or levels.numel() == 0:
        raise Depth2ImgError(f"Expected one depth map, got a tensor of shape {tuple(depth.shape)}.")
    levels = torch.nan_to_num(levels.reshape(levels.shape[-2:]))  # a copy: stretched in place below
    low, high = levels.min(), levels.max()
    # In place: a 13500x13500 panorama's map is 0.7 GB, and each out-of-place step held another one
    return levels.sub_(low).div_(high - low) if high > low else levels.zero_()


def _quantized(levels: torch.Tensor, bits: int) -> Image.Image:
    """Levels in [0, 1] as an 8 or 16-bit grayscale picture; ``levels`` is used up (scaled in place)."""
    if bits not in (8, 16):
        raise Depth2ImgError(f"A depth PNG has 8 or 16 bits, not {bits}.")
    rounded = levels.mul_(255 if bits == 8 else 65535).round_().numpy()
    if bits == 8:
        return Image.fromarray(rounded.astype(np.uint8), mode="L")
    return Image.fromarray(rounded.astype(np.uint16))


def depth_levels(depth: torch.Tensor) -> torch.Tensor:
    """Depth maps ``[..., H, W]`` -> float32 of the same shape, each map stretched over [0, 1] (white = near);
    a flat map becomes 0."""
    levels = torch.nan_to_num(depth.detach().float())
    low = levels.amin(dim=(-2, -1), keepdim=True)
    high = levels.amax(dim=(-2, -1), keepdim=True)
    return torch.where(high > low, (levels - low) / (high - low).clamp_min(torch.finfo(torch.float32).tiny),
                       torch.zeros_like(levels))


def depth_to_image(depth: torch.Tensor) -> Image.Image:
    """One depth map (``[H,W]``, ``[1,H,W]`` or ``[1,1,H,W]``) -> 8-bit grayscale, stretched to 0..255."""
    return _quantized(_single_map(depth), 8)


def depth_to_image16(depth: torch.Tensor) -> Image.Image:
    """As ``depth_to_image`` with 65536 levels: keeps the fine steps an 8-bit map bands."""
    return _quantized(_single_map(depth), 16)


def depth_png(depth: torch.Tensor, bits: int = 8, size: tuple[int, int] | None = None) -> bytes:
    """One depth map as the bytes of a grayscale PNG: stretched over all levels, then resized to ``size``
    (height, width) if given, as the WebUI's results resize the depth maps they show."""
    levels = _single_map(depth)
    if size is not None and levels.shape != tuple(size):
        resized = F.interpolate(levels[None, None], size=tuple(size), mode="bilinear", align_corners=False,
                                antialias=size[0] < levels.shape[0] or size[1] < levels.shape[1])
        levels = resized[0, 0].clamp_(0, 1)
    buffer = io.BytesIO()
    _quantized(levels, bits).save(buffer, format="PNG")
    return buffer.getvalue()


def save_depth_png(depth: torch.Tensor, path: str | os.PathLike, bits: int = 8) -> Path:
    """Written whole or not at all, never through a link planted at the name or beside it (``replacing_file``)."""
    image = _quantized(_single_map(depth), bits)
    path = Path(path)
    with replacing_file(path) as file:
        image.save(file, format="PNG")
    return path


def depth_from_image(image) -> torch.Tensor:
    """An 8/16-bit grayscale or RGB picture -> float32 depth ``[1,1,H,W]`` in [0, 1] (RGB by luminance).

    ``image``: a PIL picture, or a ``Path``, bytes or base64 text of an allowed picture format within
    ``picture_data.MAX_PICTURE_PIXELS`` (checked before it is decoded)."""
    if isinstance(image, Image.Image):
        return _levels(image)
    with checked_picture(image, "depth map") as opened:
        opened.load()
        return _levels(opened)


def _levels(image: Image.Image) -> torch.Tensor:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        array = np.asarray(image).astype(np.float32)
        array /= 65535.0
    elif mode == "I":  # 16-bit PNGs open as 32-bit integer in some Pillow versions
        array = np.asarray(image).astype(np.float32)
        array /= 65535.0 if array.max(initial=0) <= 65535 else array.max()
    elif mode == "F":
        array = np.array(image, dtype=np.float32)
    elif mode in ("L", "LA", "P", "1"):
        array = np.asarray(image.convert("L")).astype(np.float32)
        array /= 255.0
    else:
        array = luminance(np.asarray(image if image.mode == "RGB" else image.convert("RGB")), _LUMA)
        array /= 255.0
    return torch.from_numpy(array)[None, None]


def luminance(channels: np.ndarray, weights: tuple[float, float, float]) -> np.ndarray:
    """float32 ``[H,W]``: the weighted sum of an ``[H,W,C>=3]`` array's first three channels, a band of rows at a
    time, so that at most the result and one band are in float (a float64 copy of a whole map cost 32 bytes a
    pixel)."""
    total = np.empty(channels.shape[:2], dtype=np.float32)
    weight = np.array(weights, dtype=np.float32)
    for top in range(0, channels.shape[0], _BAND_ROWS):
        band = channels[top:top + _BAND_ROWS, :, :3].astype(np.float32)
        np.matmul(band, weight, out=total[top:top + _BAND_ROWS])
    return total
