"""Photos read as people's cameras and tools write them: EXIF orientation applied, 16-bit grayscale
kept in range, panoramas beyond Pillow's bomb guard accepted up to a stated limit."""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lib_depth2img.depth_image import depth_from_image
from lib_depth2img.errors import Depth2ImgError

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
MAX_PICTURE_PIXELS = 500_000_000  # a person's own panorama is no decompression bomb, but memory is finite
ESTIMATION_PIXELS = 16_000_000    # estimators see ~0.2 MP: a larger picture is reduced first, which costs nothing


@contextmanager
def _own_pixel_limit():
    # Pillow refuses pictures over ~179 MP to guard servers against bombs; these are the person's own files.
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PICTURE_PIXELS // 2  # Pillow's error comes at twice its limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _opened(path: Path | io.BytesIO, name: str | None = None):
    """The picture; a file that is no picture, or too large, as our error naming it."""
    name = name or str(path)
    try:
        with _own_pixel_limit(), Image.open(path) as image:
            yield image
    except Image.DecompressionBombError as error:
        raise Depth2ImgError(f"{name} is larger than {MAX_PICTURE_PIXELS // 1_000_000} megapixels; "
                             "scale it down first.") from error
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise Depth2ImgError(f"Cannot read the picture {name}: {error}.") from error


def open_picture(source) -> Image.Image:
    """A picture given for depth, upright and in RGB: a PIL picture, a file path, base64 text (a data URL
    too) or the bytes of a file."""
    if isinstance(source, Image.Image):
        return _upright_rgb(source)
    if isinstance(source, (str, os.PathLike)) and not str(source).startswith("data:") and is_file_path(source):
        opened = _opened(Path(source))
    elif isinstance(source, str):
        try:
            data = base64.b64decode(source.split(",", 1)[-1], validate=True)
        except (binascii.Error, ValueError) as error:
            raise Depth2ImgError("The picture for depth is neither an existing file nor valid base64.") from error
        opened = _opened(io.BytesIO(data), "(base64)")
    elif isinstance(source, (bytes, bytearray)):
        opened = _opened(io.BytesIO(bytes(source)), "(upload)")
    else:
        raise Depth2ImgError(f"A picture must be a picture file, base64 text or bytes, not {type(source).__name__}.")
    with opened as image:
        image.load()
        return _upright_rgb(image)


def is_file_path(text) -> bool:
    try:
        return Path(text).is_file()
    except (OSError, ValueError):  # base64 text is often too long to be a file name
        return False


def _upright_rgb(image: Image.Image) -> Image.Image:
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit and float keep their range, as read_picture does
        image = image.convert("I") if image.mode.startswith("I;16") else image
        return Image.fromarray(np.round(_rgb_array(image) * 255).astype(np.uint8))
    return image.convert("RGB")


def check_picture(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) as the picture will be read, EXIF orientation applied; reads the header only."""
    with _opened(Path(path)) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated a quarter turn
            width, height = height, width
    return height, width


def read_picture(path: str | os.PathLike) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB float32 ``[1,3,h,w]`` in [0, 1], reduced to at most ``ESTIMATION_PIXELS``, and the picture's
    full (height, width) as seen upright."""
    with _opened(Path(path)) as opened:
        image = ImageOps.exif_transpose(opened)
        size = (image.height, image.width)
        # 16-bit and float stay as 32-bit integer or float planes; every other mode becomes 8-bit RGB
        image = image.convert("I") if image.mode.startswith("I;16") else image
        image = image if image.mode in ("I", "F") else image.convert("RGB")
        rgb = _rgb_array(reduced_for_estimation(image))
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous(), size


def reduced_for_estimation(image: Image.Image) -> Image.Image:
    """At most ``ESTIMATION_PIXELS``, by a whole factor (a box filter, so no aliasing)."""
    factor = math.ceil(math.sqrt(image.width * image.height / ESTIMATION_PIXELS))
    return image.reduce(factor) if factor > 1 else image


def _rgb_array(image: Image.Image) -> np.ndarray:
    """HxWx3 float32 in [0, 1]; 16-bit and float grayscale keep their range instead of clipping to white."""
    if image.mode in ("I", "F"):  # read as depth maps are: 16-bit levels / 65535, float as it is
        gray = np.clip(np.nan_to_num(depth_from_image(image)[0, 0].numpy()), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    return np.asarray(image, dtype=np.float32) / 255.0
