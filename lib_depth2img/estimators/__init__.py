"""Depth estimators by name, each with the input preparation it was trained with."""

from __future__ import annotations

from torch import nn

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators.depth_anything import VITB, VITL, VITS, DepthAnythingV2
from lib_depth2img.estimators.dpt import DPT_HYBRID, DPT_LARGE, DPTDepthModel
from lib_depth2img.estimators.midas_small import MidasSmall
from lib_depth2img.transforms import DEPTH_ANYTHING_INPUT, DPT_INPUT, MIDAS_V21_SMALL_INPUT, InputSpec

_BUILDERS = {
    "dpt_hybrid": (lambda: DPTDepthModel(DPT_HYBRID), DPT_INPUT),
    "dpt_large": (lambda: DPTDepthModel(DPT_LARGE), DPT_INPUT),
    "midas_v21_small": (MidasSmall, MIDAS_V21_SMALL_INPUT),
    "depth_anything_v2_vits": (lambda: DepthAnythingV2(VITS), DEPTH_ANYTHING_INPUT),
    "depth_anything_v2_vitb": (lambda: DepthAnythingV2(VITB), DEPTH_ANYTHING_INPUT),
    "depth_anything_v2_vitl": (lambda: DepthAnythingV2(VITL), DEPTH_ANYTHING_INPUT),
}

ESTIMATOR_NAMES = tuple(_BUILDERS)


def create_estimator(name: str) -> nn.Module:
    """An estimator with uninitialised weights, in eval mode; load weights with ``lib_depth2img.weights``.

    The module carries ``estimator_name`` and ``input_spec`` so callers need not pass them around.
    """
    build, spec = _entry(name)
    module = build().eval()
    module.estimator_name = name
    module.input_spec = spec
    return module


def input_spec_for(name: str) -> InputSpec:
    return _entry(name)[1]


def _entry(name: str):
    if name not in _BUILDERS:
        raise Depth2ImgError(f"Unknown depth estimator {name!r}; choose one of: {', '.join(ESTIMATOR_NAMES)}.")
    return _BUILDERS[name]
