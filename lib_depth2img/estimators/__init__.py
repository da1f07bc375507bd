"""Every depth estimator, described once: what it is, how it is built and fed, which public files
hold its weights and where people keep them, their licence, and how its keys are recognised.

The settings' depth sources, the WebUI's file lookup, the CLI's choices and auto-detection, and
the messages about missing or wrong files all read this table.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.input_spec import DEPTH_ANYTHING_INPUT, DPT_INPUT, MIDAS_V21_SMALL_INPUT, InputSpec

if TYPE_CHECKING:
    import torch
    from torch import nn

NON_COMMERCIAL_LICENCES = ("CC-BY-NC-4.0",)


@dataclass(frozen=True)
class EstimatorSpec:
    name: str
    title: str
    description: str                     # one line, for people choosing
    build: Callable[[], nn.Module]
    input_spec: InputSpec
    release_files: tuple[str, ...]       # the public files' names; the first is the usual one
    folders: tuple[str, ...]             # where people keep them, under the WebUI's models/; the first is ours
    licence: str                         # of the public weights (SPDX)
    signature: Mapping[str, tuple[int, ...] | None]  # keys its state dict has (with their shape, if telling)

    @property
    def non_commercial(self) -> bool:
        return self.licence in NON_COMMERCIAL_LICENCES

    def matches(self, shapes: Mapping[str, tuple[int, ...]]) -> bool:
        return all(key in shapes and (shape is None or tuple(shapes[key]) == shape)
                   for key, shape in self.signature.items())


def _builder(module: str, network: str, *config: str) -> Callable[[], nn.Module]:
    """Builds ``module.network(module.config)`` when called: torch is imported only when a network is built, so the
    table (and the CLI's --help) is read without it."""
    def build() -> nn.Module:
        found = importlib.import_module(f"lib_depth2img.estimators.{module}")
        return getattr(found, network)(*(getattr(found, name) for name in config))
    return build


def _depth_anything(size: str, title: str, config: str, width: int, licence: str) -> EstimatorSpec:
    return EstimatorSpec(
        f"depth_anything_v2_vit{size}", f"Depth Anything V2 {title}",
        f"Depth Anything V2 {title}: sharp edges and fine detail, trained on 62 M pictures.",
        _builder("depth_anything", "DepthAnythingV2", config), DEPTH_ANYTHING_INPUT,
        (f"depth_anything_v2_vit{size}.pth",),
        ("depth_anything", "depth_anything_v2"), licence,
        {"pretrained.cls_token": (1, 1, width), "depth_head.projects.0.weight": None})


ESTIMATORS: dict[str, EstimatorSpec] = {spec.name: spec for spec in (
    EstimatorSpec("dpt_hybrid", "MiDaS DPT-Hybrid",
                  "MiDaS v3 DPT-Hybrid: what SD2 depth was trained with; every depth checkpoint carries it.",
                  _builder("dpt", "DPTDepthModel", "DPT_HYBRID"), DPT_INPUT,
                  ("dpt_hybrid-midas-501f0c75.pt", "dpt_hybrid_384.pt"),
                  ("midas",), "MIT", {"pretrained.model.patch_embed.backbone.stem.conv.weight": None}),
    EstimatorSpec("dpt_large", "MiDaS DPT-Large",
                  "MiDaS v3 DPT-Large: a larger plain ViT; smoother, more global depth.",
                  _builder("dpt", "DPTDepthModel", "DPT_LARGE"), DPT_INPUT,
                  ("dpt_large-midas-2f21e586.pt", "dpt_large_384.pt"),
                  ("midas",), "MIT", {"pretrained.model.patch_embed.proj.weight": (1024, 3, 16, 16)}),
    EstimatorSpec("midas_v21_small", "MiDaS v2.1 small",
                  "MiDaS v2.1 small: fast and coarse, for slow machines.",
                  _builder("midas_small", "MidasSmall"), MIDAS_V21_SMALL_INPUT,
                  ("midas_v21_small-70d6b9c8.pt", "midas_v21_small_256.pt"),
                  ("midas",), "MIT",
                  {"pretrained.layer1.0.weight": (32, 3, 3, 3), "scratch.output_conv.0.weight": None}),
    _depth_anything("s", "Small", "VITS", 384, "Apache-2.0"),
    _depth_anything("b", "Base", "VITB", 768, "CC-BY-NC-4.0"),
    _depth_anything("l", "Large", "VITL", 1024, "CC-BY-NC-4.0"),
)}
ESTIMATOR_NAMES = tuple(ESTIMATORS)
CHECKPOINT_ESTIMATOR = "dpt_hybrid"  # what SD2 depth was trained with (v2-midas-inference.yaml)
# Recognised so the message can say what they are, though nothing here runs them.
_UNSUPPORTED = {"MiDaS v2.1 (ResNeXt-101, midas_v21-f6b98070.pt)": {"pretrained.layer1.0.weight": (64, 3, 7, 7)}}


def spec_for(name: str) -> EstimatorSpec:
    if name not in ESTIMATORS:
        raise Depth2ImgError(f"Unknown depth estimator {name!r}; choose one of: {', '.join(ESTIMATOR_NAMES)}.")
    return ESTIMATORS[name]


def create_estimator(name: str, device: torch.device | str | None = None) -> nn.Module:
    """An estimator with uninitialised weights, in eval mode; load weights with ``lib_depth2img.weights``.

    ``device="meta"`` builds shapes only, allocating nothing: loading then takes the state's tensors
    as they are (no second copy, and file-backed tensors stay file-backed). The module carries
    ``estimator_name`` and ``input_spec`` so callers need not pass them around.
    """
    import torch

    spec = spec_for(name)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        module = spec.build().eval()
    module.estimator_name = name
    module.input_spec = spec.input_spec
    return module


def input_spec_for(name: str) -> InputSpec:
    return spec_for(name).input_spec


def _shapes(index: Mapping[str, object], prefix: str) -> dict[str, tuple[int, ...]]:
    return {k[len(prefix):]: tuple(v.shape) for k, v in index.items() if k.startswith(prefix)}


def detect_estimator(index: Mapping[str, object], prefix: str = "") -> str | None:
    """Which estimator the tensors under ``prefix`` belong to (``index``: name -> anything with ``.shape``)."""
    shapes = _shapes(index, prefix)
    return next((spec.name for spec in ESTIMATORS.values() if spec.matches(shapes)), None)


def describe_unsupported(index: Mapping[str, object], prefix: str = "") -> str | None:
    """The name of a known depth network that no estimator here runs, if the keys are its."""
    shapes = _shapes(index, prefix)
    return next((name for name, signature in _UNSUPPORTED.items()
                 if all(shapes.get(k) == shape for k, shape in signature.items())), None)


def non_commercial_note(names) -> str:
    """A sentence naming those of ``names`` whose public weights forbid commercial use, or ``""``."""
    specs = [ESTIMATORS[name] for name in names if name in ESTIMATORS and ESTIMATORS[name].non_commercial]
    if not specs:
        return ""
    licences = ", ".join(sorted({spec.licence for spec in specs}))
    return (f"{' and '.join(spec.title for spec in specs)}: the weights' licence ({licences}) allows "
            "non-commercial use only.")


def where_weights_live() -> str:
    """Which files hold estimator weights and where people keep them, for messages."""
    by_folder: dict[str, list[str]] = {}
    for spec in ESTIMATORS.values():
        by_folder.setdefault(spec.folders[0], []).append(spec.release_files[0])
    listed = "; ".join(f"{', '.join(files)} in models/{folder}/" for folder, files in by_folder.items())
    return (f"Estimator weights are release files ({listed}) or a whole SD2 depth checkpoint such as "
            "512-depth-ema.ckpt in models/Stable-diffusion/, which carries DPT-Hybrid.")
