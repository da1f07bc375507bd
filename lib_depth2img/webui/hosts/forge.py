"""Forge (lllyasviel, main): no ldm and no depth path of its own. huggingface_guess loads 512-depth-ema as
SD 2 with a 5-channel UNet, drops ``depth_model.*`` and marks the model ``is_inpaint``; the conditioning
goes in through ``p.img2img_image_conditioning``, which Forge appends as ``c_concat``. The model loads
lazily, after ``before_process``. reForge and Forge Classic keep ldm's depth model, built empty: its
network is offered, and used only if it holds the checkpoint's weights."""

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
    return getattr(getattr(sd_model, "depth_model", None), "model", None)


def _install() -> None:
    pass  # nothing is downloaded at load, so there is nothing to take offline


CANVASES = ("img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch")  # ForgeCanvas blocks


def _watch_pictures(script, found: dict) -> None:
    """A ForgeCanvas is an HTML block with the tab's elem id, followed by two hidden LogicalImage inputs;
    the picture is the one classed ``logical_image_background`` (a PIL picture as an input). Inpaint
    upload is a plain gr.Image."""
    from modules import script_callbacks

    waiting: list[str] = []
    for elem_id in CANVASES:
        script.on_after_component(lambda c, e=elem_id: waiting.append(e), elem_id=elem_id)
    script.on_after_component(lambda c: found.__setitem__("img_inpaint_base", c.component), elem_id="img_inpaint_base")

    def canvas_picture(component, **kwargs):
        if waiting and "logical_image_background" in (kwargs.get("elem_classes") or ()):
            found[waiting.pop(0)] = component

    script_callbacks.on_after_component(canvas_picture)


FORGE = Host(name="Forge", conditioning_method="img2img_image_conditioning", has_own_depth_path=False,
             is_depth_model=_is_depth_model, depth_network=_depth_network, install=_install,
             picture_inputs=(*CANVASES, "img_inpaint_base"), watch_pictures=_watch_pictures)
