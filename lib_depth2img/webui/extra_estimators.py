"""Our own estimators, loaded from files people already have: another estimator's release file, found by
the registry's names and folders under the WebUI's ``models/`` and in ControlNet's download folders (so
nobody keeps two copies), or the depth slice of the loaded checkpoint itself where the host's model has
no network filled with it. One is held at a time: they are hundreds of MB each.
"""

from __future__ import annotations

from pathlib import Path

import torch
from modules import devices, paths_internal, shared
from torch import nn

from lib_depth2img import depth_source
from lib_depth2img.estimators import ESTIMATORS
from lib_depth2img.generation_args import EXTRA_ESTIMATORS
from lib_depth2img.held_estimator import HeldEstimator
from lib_depth2img.webui import option_keys

HELD = HeldEstimator()  # the one estimator loaded from a file (a release file or a checkpoint's depth slice)


def folders(name: str) -> list[Path]:
    """Where estimator ``name``'s release file may be: the WebUI's ``models/`` first, then ControlNet's downloads."""
    models = Path(paths_internal.models_path)
    controlnet = Path(paths_internal.extensions_dir) / "sd-webui-controlnet" / "annotator" / "downloads"
    return [root / folder for root in (models, controlnet) for folder in ESTIMATORS[name].folders]


def find_weights(name: str) -> Path | None:
    return depth_source.find_weights(name, folders(name))


def available() -> list[str]:
    return [name for name in EXTRA_ESTIMATORS if find_weights(name) is not None]


def where_files_go() -> str:
    """Each other depth source's release file and the folder it goes in, for /docs and messages."""
    by_folder: dict[Path, list[str]] = {}
    for name in EXTRA_ESTIMATORS:
        spec = ESTIMATORS[name]
        by_folder.setdefault(Path(paths_internal.models_path) / spec.folders[0], []).append(spec.release_files[0])
    return "; ".join(f"{', '.join(files)} in {folder}" for folder, files in by_folder.items())


def check_available(name: str) -> Path:
    """The weights file of estimator ``name``, or the message saying which file goes where."""
    return depth_source.check_available(name, folders(name))


def _dtype() -> torch.dtype:
    return devices.dtype if devices.device.type == "cuda" else torch.float32


def load(name: str) -> nn.Module:
    return HELD.from_release_file(name, check_available(name), devices.device, _dtype())


def load_from_checkpoint(checkpoint: str, name: str) -> nn.Module:
    """Estimator ``name`` with the depth weights of ``checkpoint``, on the compute device."""
    return HELD.from_checkpoint(checkpoint, name, devices.device, _dtype())


# The flags that ask for little GPU memory, each host keeping some: the original WebUI and reForge --medvram and
# --lowvram, Forge Classic (which dropped those two) --always-low-vram and --always-no-vram. One a host lacks is off.
LOW_MEMORY_FLAGS = ("medvram", "lowvram", "always_low_vram", "always_no_vram")


def release() -> None:
    """Off the GPU after use under a low-memory flag of the host, or when the setting says so."""
    low_memory = any(getattr(shared.cmd_opts, flag, False) for flag in LOW_MEMORY_FLAGS)
    if low_memory or shared.opts.data.get(option_keys.MOVE_TO_CPU, False):
        HELD.move_to(devices.cpu)
