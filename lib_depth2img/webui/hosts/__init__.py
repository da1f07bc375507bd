"""What differs between the hosts this extension runs in, and which one this is.

Each host module holds only that: how a depth model is recognised, which method of the processing
object the conditioning replaces, the loaded model's own MiDaS network if it has one, the picture
components of the img2img tab, and what must be installed at start-up. Everything else is
host-neutral. Host modules import their host's own packages (``ldm``, ``modules_forge``) only inside
functions, so importing this package never fails on another host.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Host:
    name: str
    conditioning_method: str  # the p method whose shadow hands the UNet our conditioning
    has_own_depth_path: bool  # whether the host can run a depth model with this extension switched off
    is_depth_model: Callable[[object], bool]
    depth_network: Callable[[object], nn.Module | None]  # the loaded model's own MiDaS network, if any
    install: Callable[[], None]  # start-up work, once
    picture_inputs: tuple[str, ...]  # elem ids of the img2img tabs' picture components, in the tabs' order
    watch_pictures: Callable[[object, dict], None]  # (script, found): fill found[elem id] as the UI is built


def detect() -> Host | None:
    """Forge if ``modules_forge`` exists, the original WebUI if ldm's depth model does, else None."""
    if importlib.util.find_spec("modules_forge") is not None:
        from lib_depth2img.webui.hosts.forge import FORGE

        return FORGE
    if importlib.util.find_spec("ldm") is not None:
        from lib_depth2img.webui.hosts.a1111 import A1111

        return A1111
    return None
