"""A depth checkpoint as the refiner (the original WebUI's ``refiner_checkpoint``): its steps need depth too.

The WebUI samples with one ``p.image_conditioning`` throughout and swaps the model in mid-sampling
(``sd_samplers_common.apply_refiner``), so a depth refiner after a plain base got the base's dummy
conditioning and failed on tensor sizes. ldm's plain models ignore ``c_concat``: the depth conditioning is
made for the whole generation from the start, from the refiner checkpoint's own depth weights, and only the
refiner's steps use it. An inpainting base needs its own conditioning in that place, and Forge's sampler hands
``c_concat`` to any model (reForge, Forge Classic): there the generation stops before any work, with words.
"""

from __future__ import annotations

from types import SimpleNamespace

from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.errors import Depth2ImgError

INFOTEXT = "Depth2img refiner"


def depth_refiner(p):
    """The refiner's checkpoint info where it is a depth checkpoint other than the loaded one, else None."""
    info = getattr(p, "refiner_checkpoint_info", None)
    filename = getattr(info, "filename", None)
    if not filename or filename == getattr(getattr(p.sd_model, "sd_checkpoint_info", None), "filename", None):
        return None
    try:
        return info if inspect_checkpoint(filename).is_depth else None
    except Depth2ImgError:
        return None


def title(info) -> str:
    return getattr(info, "name_for_extra", None) or getattr(info, "title", None) or "The refiner"


def stand_in(info) -> SimpleNamespace:
    """What depth is read from before the refiner is loaded: its checkpoint file."""
    return SimpleNamespace(sd_checkpoint_info=info)


def why_not(p, info, enabled: bool, plain_models_ignore_concat: bool) -> str | None:
    """Why the base model cannot carry the refiner's depth through its steps, or None where it can."""
    name = title(info)
    if not enabled:
        return (f"The refiner {name} is a depth-to-image model: switch Depth-to-image on so that its steps get "
                "depth (through the API: \"enabled\": true), or pick another refiner.")
    if not plain_models_ignore_concat:
        return (f"The refiner {name} is a depth-to-image model and this WebUI's sampler would hand its depth to the "
                "base model too: use a depth model as the base as well, or pick another refiner.")
    if getattr(getattr(p.sd_model, "model", None), "conditioning_key", None) in ("hybrid", "concat"):
        return (f"The refiner {name} is a depth-to-image model and the base model is an inpainting one: they need "
                "different extra inputs at once. Use a plain or a depth model as the base, or another refiner.")
    return None
