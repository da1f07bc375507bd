"""Depth maps as pictures people can look at and exchange: 8-bit and 16-bit grayscale, white = near."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from lib_depth2img.errors import Depth2ImgError

_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's convert("L")


def _single_map(depth: torch.Tensor) -> np.ndarray:
    array = depth.detach().float().cpu()
    # The last two dimensions are the map's: squeeze() would also drop the sides of a 1x1 or 1xN picture's map.
    if array.ndim < 2 or math.prod(array.shape[:-2]) != 1 or array.numel() == 0:
        raise Depth2ImgError(f"Expected one depth map, got a tensor of shape {tuple(depth.shape)}.")
    array = torch.nan_to_num(array.reshape(array.shape[-2:])).numpy().astype(np.float64)
    low, high = array.min(), array.max()
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _quantized(levels: np.ndarray, bits: int) -> Image.Image:
    """Levels in [0, 1] as an 8 or 16-bit grayscale picture."""
    if bits not in (8, 16):
        raise Depth2ImgError(f"A depth PNG has 8 or 16 bits, not {bits}.")
    if bits == 8:
        return Image.fromarray(np.round(levels * 255).astype(np.uint8), mode="L")
    return Image.fromarray(np.round(levels * 65535).astype(np.uint16))


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
        resized = F.interpolate(torch.from_numpy(levels).float()[None, None], size=tuple(size), mode="bilinear",
                                align_corners=False, antialias=size[0] < levels.shape[0] or size[1] < levels.shape[1])
        levels = resized[0, 0].clamp(0, 1).double().numpy()
    buffer = io.BytesIO()
    _quantized(levels, bits).save(buffer, format="PNG")
    return buffer.getvalue()


def save_depth_png(depth: torch.Tensor, path: str | os.PathLike, bits: int = 8) -> Path:
    image = _quantized(_single_map(depth), bits)
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")  # an interrupted save leaves no half picture
    try:
        image.save(partial, format="PNG")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def depth_from_image(image: Image.Image | str | os.PathLike) -> torch.Tensor:
    """An 8/16-bit grayscale or RGB picture -> float32 depth ``[1,1,H,W]`` in [0, 1] (RGB by luminance)."""
    if not isinstance(image, Image.Image):
        try:
            with Image.open(image) as opened:
                opened.load()
                image = opened
        except (UnidentifiedImageError, OSError) as error:
            raise Depth2ImgError(f"{image} is not a picture that can be read as a depth map ({error}).") from error
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        array = np.asarray(image, dtype=np.float64) / 65535.0
    elif mode == "I":  # 16-bit PNGs open as 32-bit integer in some Pillow versions
        array = np.asarray(image, dtype=np.float64)
        array /= 65535.0 if array.max(initial=0) <= 65535 else array.max()
    elif mode == "F":
        array = np.asarray(image, dtype=np.float64)
    elif mode in ("L", "LA", "P", "1"):
        array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
    else:
        array = np.asarray(image.convert("RGB"), dtype=np.float64) @ _LUMA / 255.0
    return torch.from_numpy(array.astype(np.float32))[None, None]
