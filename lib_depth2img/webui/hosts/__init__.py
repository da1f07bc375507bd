"""What differs between the hosts this extension runs in, and which one this is.

A host is told by what it has, not by what it resembles: ldm's depth model (the original WebUI, reForge
and Forge Classic build it and run a depth path of their own) or, without ldm, ``modules_forge`` (Forge:
no depth path). Each host module holds only what follows from that: how a depth model is recognised,
which method of the processing object the conditioning replaces, the loaded model's own MiDaS network,
and what must be installed at start-up. Anything else a host may lack (a command-line flag, a class of
the X/Y/Z plot) is read with ``attribute_or``: a missing one costs that feature, with one console line,
never the generation. Host modules import their host's packages (``ldm``, ``modules_forge``) only inside
functions, so importing this package never fails on another host.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

# The img2img tabs' picture inputs, in the tabs' order: gr.Image components, or ForgeCanvas blocks in Forge.
PICTURE_INPUTS = ("img2img_image", "img2img_sketch", "img2maskimg", "inpaint_sketch", "img_inpaint_base")
# The tabs painted in: the WebUI's color-sketch gr.Image hands the picture with the paint on it, but a
# ForgeCanvas keeps the paint in a layer of its own, which Forge lays over the picture before it generates
# (img2img.py, modes 1 and 3); the Inpaint canvas's layer is the mask, which it does not lay over.
SKETCH_INPUTS = ("img2img_sketch", "inpaint_sketch")


@dataclass(frozen=True)
class Host:
    name: str  # for people: the console line and messages
    conditioning_method: str  # the p method whose shadow hands the UNet our conditioning
    has_own_depth_path: bool  # whether the host can run a depth model with this extension switched off
    is_depth_model: Callable[[object], bool]
    depth_network: Callable[[object], nn.Module | None]  # the loaded model's own MiDaS network, if any
    install: Callable[[], None]  # start-up work, once
    # ldm's sampler gives a plain model no c_concat; Forge's hands it to any model whose latent size it matches
    plain_models_ignore_concat: bool = False
    picture_inputs: tuple[str, ...] = PICTURE_INPUTS


def detect() -> Host | None:
    """The host, by what it has; None where it has neither ldm's depth model nor ``modules_forge``."""
    forge_version = _forge_version()
    if importlib.util.find_spec("ldm") is not None:
        from lib_depth2img.webui.hosts.ldm_depth import ldm_host

        return ldm_host(_ldm_host_name(forge_version), plain_models_ignore_concat=forge_version is None)
    if forge_version is not None:
        from lib_depth2img.webui.hosts.forge import FORGE

        return FORGE
    return None


def _forge_version() -> str | None:
    """``modules_forge``'s version string ("" if it states none), or None without ``modules_forge``."""
    if importlib.util.find_spec("modules_forge") is None:
        return None
    try:
        return str(importlib.import_module("modules_forge.forge_version").version)
    except (ImportError, AttributeError):
        return ""


def _ldm_host_name(forge_version: str | None) -> str:
    """Only the name: what the host does is told by what it has. Forge Classic states its version as "classic";
    reForge states a number (as the 2024 Forge that both come from did, which keeps ldm too)."""
    if forge_version is None:
        return "AUTOMATIC1111 WebUI"
    if forge_version == "classic":
        return "Forge Classic"
    return f"reForge {forge_version}".strip()


def found_line(host: Host | None) -> str:
    """The console line that says which host was found and what that means for depth."""
    if host is None:
        return ("Depth-to-image: this WebUI has neither ldm's depth model (AUTOMATIC1111, reForge, Forge Classic) "
                "nor modules_forge (Forge); the extension steps aside.")
    switched_off = ("the host's own depth path runs" if host.has_own_depth_path
                    else "a depth checkpoint is stopped with a message (the host has no depth path)")
    return f"Depth-to-image: running in {host.name}; switched off, {switched_off}."


_told: set[str] = set()


def attribute_or(owner, name: str, fallback, costs: str):
    """``owner.name``, or ``fallback`` where this host lacks it; the first time, a console line says what that
    costs (``costs``: the feature that goes, or that nothing does)."""
    try:
        return getattr(owner, name)
    except AttributeError:
        if name not in _told:
            _told.add(name)
            print(f"Depth-to-image: this WebUI has no {name}: {costs}.")
        return fallback
