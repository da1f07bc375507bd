"""MiDaS input preparation in torch, on the images' own device and in any float dtype.

The reference transform (MiDaS ``Resize`` + ``NormalizeImage``) goes through numpy and
OpenCV, which cannot resize float16 ("src data type = 23 is not supported") and
forces a trip to the CPU. This does the same arithmetic with ``F.interpolate``:
bicubic with a = -0.75 and clamped borders, as ``cv2.INTER_CUBIC``.

The official size rules fail on thin and extreme pictures: a 4x3000 strip's short side rounds to 0
(torch's "output (H: 0, W: 384)"), and Depth Anything's lower bound gives it a 518x388500 input. So
every side is clamped to between one multiple and ``MAX_SIDE_IN_SIZES`` times the estimator's size;
pictures up to about 8:1 are untouched, and the depth is resized back to the picture's own size anyway.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.input_spec import (  # the specs lived here before input_spec.py and are still imported so
    DEPTH_ANYTHING_INPUT,  # noqa: F401
    DPT_INPUT,  # noqa: F401
    MIDAS_V21_INPUT,  # noqa: F401
    MIDAS_V21_SMALL_INPUT,  # noqa: F401
    InputSpec,
)

MAX_SIDE_IN_SIZES = 8  # an 8:1 panorama still gets its official input (Depth Anything: 518x4144)


def input_side_bounds(spec: InputSpec) -> tuple[int, int]:
    """The shortest and the longest side an estimator's input is given (each a multiple of ``multiple_of``)."""
    return spec.multiple_of, spec.size * MAX_SIDE_IN_SIZES // spec.multiple_of * spec.multiple_of


def _to_multiple(value: float, multiple: int, max_value: int | None = None, min_value: int = 0) -> int:
    # round() rounds halves to even, as the reference's np.round does.
    result = round(value / multiple) * multiple
    if max_value is not None and result > max_value:
        result = math.floor(value / multiple) * multiple
    if result < min_value:
        result = math.ceil(value / multiple) * multiple
    return int(result)


def estimator_input_size(height: int, width: int, spec: InputSpec) -> tuple[int, int]:
    """The (height, width) MiDaS's ``Resize(keep_aspect_ratio=True)`` gives a picture of this size, each side
    kept within ``input_side_bounds``."""
    if height < 1 or width < 1:
        raise Depth2ImgError(f"A picture of {width}x{height} pixels has nothing to estimate depth from; "
                             "give one at least 1x1.")
    scale_h, scale_w = spec.size / height, spec.size / width
    if spec.resize_method == "minimal":
        scale = scale_w if abs(1 - scale_w) < abs(1 - scale_h) else scale_h
        limit = None
    elif spec.resize_method == "upper_bound":
        scale = min(scale_w, scale_h)
        limit = spec.size
    elif spec.resize_method == "lower_bound":
        scale = max(scale_w, scale_h)
        limit = None
    else:
        raise ValueError(f"unknown resize method {spec.resize_method!r}")
    floor = spec.size if spec.resize_method == "lower_bound" else 0
    shortest, longest = input_side_bounds(spec)
    return tuple(min(max(_to_multiple(scale * side, spec.multiple_of, limit, floor), shortest), longest)
                 for side in (height, width))


def check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise Depth2ImgError(f"Expected RGB pictures as a [batch, 3, height, width] tensor, got {shape}.")
    if not images.is_floating_point():
        raise Depth2ImgError(f"Expected float pictures with values in [0, 1], got dtype {images.dtype}.")
    if images.shape[0] == 0 or images.shape[-1] < 1 or images.shape[-2] < 1:
        raise Depth2ImgError(f"The picture batch is empty: shape {tuple(images.shape)}.")


def prepare_estimator_input(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """RGB ``[B,3,H,W]`` in [0, 1] -> the estimator's normalised float32 input, on the same device."""
    check_images(images)
    # float32 for the arithmetic: half-precision bicubic is missing on some backends and loses detail.
    x = images.float()
    size = estimator_input_size(x.shape[-2], x.shape[-1], spec)
    if size != tuple(x.shape[-2:]):
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
