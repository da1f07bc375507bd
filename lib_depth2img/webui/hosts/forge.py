"""Forge (lllyasviel, main): no ldm and no depth path of its own. huggingface_guess loads 512-depth-ema as
SD 2 with a 5-channel UNet, drops ``depth_model.*`` and marks the model ``is_inpaint``; the conditioning
goes in through ``p.img2img_image_conditioning``, which Forge appends as ``c_concat``. The model loads
lazily, after ``before_process``. Depth comes from our estimator loaded from the checkpoint file."""

from __future__ import annotations

from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.webui.hosts import Host


def _is_depth_model(sd_model) -> bool:
    filename = getattr(getattr(sd_model, "sd_checkpoint_info", None), "filename", None)
    if not filename:
        return False
    try:
        return inspect_checkpoint(filename).is_depth
    except Depth2ImgError:
        return False


def _depth_network(sd_model):
    return None  # huggingface_guess drops depth_model.*


def _install() -> None:
    pass  # nothing is downloaded at load, so there is nothing to take offline


FORGE = Host(name="Forge", conditioning_method="img2img_image_conditioning", has_own_depth_path=False,
             is_depth_model=_is_depth_model, depth_network=_depth_network, install=_install)
