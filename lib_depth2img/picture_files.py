"""Photos read as people's cameras and tools write them: EXIF orientation applied, 16-bit grayscale
kept in range. Only the formats and sizes ``picture_data`` allows are decoded; the CLI's own files may
be larger (``MAX_OWN_PICTURE_PIXELS``) than what comes over HTTP (``MAX_PICTURE_PIXELS``)."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image, ImageOps

from lib_depth2img.depth_image import depth_from_image
from lib_depth2img.picture_data import MAX_OWN_PICTURE_PIXELS, check_pixel_count, checked_picture

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
ESTIMATION_PIXELS = 16_000_000    # estimators see ~0.2 MP: a larger picture is reduced first, which costs nothing


def open_picture(source) -> Image.Image:
    """A picture given for depth, upright and in RGB: a PIL picture (the page's), base64 text (a data URL too),
    the bytes of a file, or a ``Path`` our own code chose (the Batch tab's depth folder). A string is always
    the picture's data, never a file name. At most ``picture_data.MAX_PICTURE_PIXELS``."""
    if isinstance(source, Image.Image):
        check_pixel_count(source.size, "picture for depth")
        return _upright_rgb(ImageOps.exif_transpose(source))  # a turned copy: the caller's picture stays as it was
    with checked_picture(source, "picture for depth") as image:
        image.load()
        if image.getexif().get(0x0112, 1) != 1:  # turned only when it must be: the copy costs a picture's size
            image = ImageOps.exif_transpose(image)  # (in_place=True is newer than the WebUI's Pillow 9.5)
        return _upright_rgb(image)


def _upright_rgb(image: Image.Image) -> Image.Image:
    """A new RGB picture (never ``image`` itself, which may be closed or the caller's)."""
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit and float keep their range, as read_picture does
        levels = _gray_levels(image)
        levels *= 255
        return Image.fromarray(np.round(levels, out=levels).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def check_picture(path: os.PathLike) -> tuple[int, int]:
    """(height, width) as the picture will be read, EXIF orientation applied; reads the header only (a PNG's
    orientation is not looked for: Pillow finds a PNG's EXIF only by decoding the whole picture)."""
    with checked_picture(path, "picture", MAX_OWN_PICTURE_PIXELS) as image:
        width, height = image.size
        if image.format != "PNG" and image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated a quarter turn
            width, height = height, width
    return height, width


def read_picture(path: os.PathLike) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB float32 ``[1,3,h,w]`` in [0, 1], reduced to at most ``ESTIMATION_PIXELS``, and the picture's
    full (height, width) as seen upright. The CLI's: a file of its own, up to ``MAX_OWN_PICTURE_PIXELS``."""
    with checked_picture(path, "picture", MAX_OWN_PICTURE_PIXELS) as image:
        image.load()
        if image.getexif().get(0x0112, 1) != 1:  # turned only when it must be: the copy costs a picture's size
            image = ImageOps.exif_transpose(image)
        size = (image.height, image.width)
        # 16-bit and float stay as 32-bit integer or float planes; every other mode becomes 8-bit RGB, after the
        # reduction where it can be (grey and RGBA reduce channel by channel, so the order changes nothing, and
        # a 182 MP grey panorama is not made 546 MB of RGB first)
        image = image.convert("I") if image.mode.startswith("I;16") else image
        if image.mode not in ("I", "F", "L", "LA", "RGB", "RGBA"):
            image = image.convert("RGB")
        image = reduced_for_estimation(image)
        rgb = _rgb_array(image if image.mode in ("I", "F") else image.convert("RGB"))
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous(), size


def reduced_for_estimation(image: Image.Image) -> Image.Image:
    """At most ``ESTIMATION_PIXELS``, by a whole factor (a box filter, so no aliasing)."""
    factor = math.ceil(math.sqrt(image.width * image.height / ESTIMATION_PIXELS))
    return image.reduce(factor) if factor > 1 else image


def _gray_levels(image: Image.Image) -> np.ndarray:
    """HxW float32 in [0, 1] of a 16-bit or float grayscale picture, read as depth maps are (16-bit levels
    / 65535, float as it is), so its range is kept instead of clipping to white."""
    levels = depth_from_image(image)[0, 0].numpy()
    return np.clip(np.nan_to_num(levels, copy=False), 0.0, 1.0, out=levels)


def _rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 float32 in [0, 1]; 16-bit and float grayscale keep their range instead of clipping to white."""
    if image.mode in ("I", "F"):
        return np.repeat(_gray_levels(image)[..., None], 3, axis=2)
    return np.asarray(image, dtype=np.float32) / 255.0
