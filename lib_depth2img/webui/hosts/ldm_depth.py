"""Hosts with ldm's depth model: the AUTOMATIC1111 WebUI 1.10.x, reForge and Forge Classic.

ldm's ``LatentDepth2ImageDiffusion`` carries a MiDaS network, and the conditioning goes in through
``p.depth2img_image_conditioning(source_image)``, the host's own depth path. All three build that network
from ``models/midas/dpt_hybrid-midas-501f0c75.pt`` and download the file when it is missing; the original
WebUI then fills it from the checkpoint, reForge and Forge Classic never do. At start-up the loader is
taken offline, and after each load the network is made to hold the checkpoint's depth weights
(``model_loading``), so the host's own path and ours both take depth from the checkpoint.
"""

from __future__ import annotations

from lib_depth2img.webui import model_loading
from lib_depth2img.webui.hosts import Host


def _is_depth_model(sd_model) -> bool:
    return getattr(sd_model, "depth_model", None) is not None


def _depth_network(sd_model):
    return getattr(getattr(sd_model, "depth_model", None), "model", None)


def _install() -> None:
    from modules import script_callbacks

    model_loading.install_offline_midas_loader()
    script_callbacks.on_model_loaded(model_loading.check_loaded_depth_weights)


def ldm_host(name: str, plain_models_ignore_concat: bool) -> Host:
    """``plain_models_ignore_concat``: the original WebUI's own sampler; reForge's and Classic's are Forge's."""
    return Host(name=name, conditioning_method="depth2img_image_conditioning", has_own_depth_path=True,
                is_depth_model=_is_depth_model, depth_network=_depth_network, install=_install,
                plain_models_ignore_concat=plain_models_ignore_concat)
