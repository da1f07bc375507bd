"""Depth maps people bring: from Blender, phones, other tools. White (larger) = near, as MiDaS.

Read with OpenCV so 16-bit grayscale *and* 16-bit colour maps keep all their levels; colour is
read by luminance. Fitted to the picture by the WebUI's resize modes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lib_depth2img.depth_image import depth_from_image, luminance
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.picture_data import FORMAT_NAMES, check_pixel_count, checked_picture_bytes

_LUMA_BGR = (0.114, 0.587, 0.299)  # ITU-R 601 weights in OpenCV's channel order
RESIZE_MODES = {0: "stretched", 1: "cropped", 2: "filled at the edges", 3: "stretched"}
RESIZE_MODE_OF_FIT = {"crop": 1, "stretch": 0, "fill": 2}  # txt2img's fit choices as the WebUI's resize modes


def _decode(data: bytes, name: str) -> np.ndarray:
    import cv2  # the WebUI ships OpenCV; imported here so the rest of the core does not need it

    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise Depth2ImgError(f"The depth map {name} is not a picture OpenCV can read; use {FORMAT_NAMES}.")
    return array


def _values_from_source(source) -> tuple[np.ndarray, str]:
    """The map's values in [0, 1] (2-D, float32) and a name for messages. Files and data are checked (kind,
    pixel count) from their header before OpenCV decodes them."""
    if isinstance(source, Image.Image):
        check_pixel_count(source.size, "depth map")
        return depth_from_image(source)[0, 0].numpy(), "picture"
    data, name = checked_picture_bytes(source, "depth map")
    return _scaled(_decode(data, name)), name


def _scaled(array: np.ndarray) -> np.ndarray:
    """float32 levels of what OpenCV decoded: 8/16-bit / their largest level, float as it is, colour by luminance."""
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(array.dtype, 1.0)
    if array.ndim == 3 and array.shape[2] >= 3:
        values = luminance(array, _LUMA_BGR)
    else:
        values = (array[..., 0] if array.ndim == 3 else array).astype(np.float32)
    values /= scale
    return values


def read_depth_map(source) -> torch.Tensor:
    """A depth map as float32 ``[1,1,H,W]`` in [0, 1]: 8/16-bit or float, grayscale or colour (luminance).

    ``source``: base64 text (a data URL too; a string is never a file name), bytes, a PIL picture, or a ``Path``
    our own code chose (the Batch tab's depth folder); PNG, JPEG, WebP, TIFF or BMP of at most
    ``picture_data.MAX_PICTURE_PIXELS``."""
    values, name = _values_from_source(source)
    if values.ndim != 2 or values.size == 0:
        raise Depth2ImgError(f"The depth map {name} has no pixels.")
    low, high = values.min(), values.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise Depth2ImgError(f"The depth map {name} holds values that are not numbers.")
    if high == low:
        raise Depth2ImgError(f"The depth map {name} has the same value everywhere, so it holds no depth.")
    return torch.from_numpy(values)[None, None]


def fit_depth_map(depth: torch.Tensor, height: int, width: int, resize_mode: int = 0) -> torch.Tensor:
    """``[1,1,h,w]`` -> ``[1,1,height,width]`` the way the WebUI fits the picture: 0 stretch,
    1 crop to fill, 2 fit inside and fill the rest from the edges, 3 stretch."""
    h, w = depth.shape[-2:]
    if (h, w) == (height, width):
        return depth

    def resize(x, size):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=size[0] < x.shape[-2])

    if resize_mode == 1:
        scale = max(height / h, width / w)
        # Only the middle is kept: a thin map covering a wide picture would be scaled to gigapixels first (1x3000
        # for 2048x64: 6144000x2048), so beyond 8 times the picture's size the rest is cut before scaling.
        def middle(side: int, target: int) -> tuple[int, int]:  # (start, length), centred exactly
            keep = min(side, math.ceil(8 * target / scale))
            keep += (side - keep) % 2
            return (side - keep) // 2, keep

        (top, h), (left, w) = middle(h, height), middle(w, width)
        depth = depth[..., top:top + h, left:left + w]
        scaled = resize(depth, (max(height, round(h * scale)), max(width, round(w * scale))))
        top, left = (scaled.shape[-2] - height) // 2, (scaled.shape[-1] - width) // 2
        return scaled[..., top:top + height, left:left + width]
    if resize_mode == 2:
        scale = min(height / h, width / w)
        scaled = resize(depth, (min(height, max(1, round(h * scale))), min(width, max(1, round(w * scale)))))
        pad_h, pad_w = height - scaled.shape[-2], width - scaled.shape[-1]
        return F.pad(scaled, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate")
    return resize(depth, (height, width))
