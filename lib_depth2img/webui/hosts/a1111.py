"""AUTOMATIC1111 WebUI 1.10.x: ldm's ``LatentDepth2ImageDiffusion`` carries a MiDaS network, and the
conditioning goes in through ``p.depth2img_image_conditioning(source_image)``."""

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


def _watch_pictures(script, found: dict) -> None:
    for elem_id in found:
        script.on_after_component(lambda c, e=elem_id: found.__setitem__(e, c.component), elem_id=elem_id)


A1111 = Host(name="AUTOMATIC1111 WebUI", conditioning_method="depth2img_image_conditioning", has_own_depth_path=True,
             is_depth_model=_is_depth_model, depth_network=_depth_network, install=_install,
             picture_inputs=("img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch", "img_inpaint_base"),
             watch_pictures=_watch_pictures)
