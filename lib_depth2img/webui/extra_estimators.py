"""Depth estimators besides the checkpoint's own: found among the files people already have.

Looked up in ``models/midas`` and ``models/depth_anything`` (and ``depth_anything_v2``), and in the
folders other popular extensions download to, so nobody keeps two copies. One is loaded at a time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from modules import devices, paths_internal, shared
from torch import nn

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import create_estimator
from lib_depth2img.webui import option_keys
from lib_depth2img.weights import load_estimator_from_file

FILES = {
    "dpt_large": ("dpt_large-midas-2f21e586.pt", "midas"),
    "midas_v21_small": ("midas_v21_small-70d6b9c8.pt", "midas"),
    "depth_anything_v2_vits": ("depth_anything_v2_vits.pth", "depth_anything"),
    "depth_anything_v2_vitb": ("depth_anything_v2_vitb.pth", "depth_anything"),
    "depth_anything_v2_vitl": ("depth_anything_v2_vitl.pth", "depth_anything"),
}
_loaded: dict[str, nn.Module] = {}


def _folders() -> list[Path]:
    models = Path(paths_internal.models_path)
    controlnet = Path(paths_internal.extensions_dir) / "sd-webui-controlnet" / "annotator" / "downloads"
    return [models / "midas", models / "depth_anything", models / "depth_anything_v2",
            controlnet / "midas", controlnet / "depth_anything_v2", controlnet / "depth_anything"]


def find_weights(name: str) -> Path | None:
    filename = FILES[name][0]
    for folder in _folders():
        for candidate in (folder / filename, (folder / filename).with_suffix(".safetensors")):
            if candidate.is_file():
                return candidate
    return None


def available() -> list[str]:
    return [name for name in FILES if find_weights(name) is not None]


def load(name: str) -> nn.Module:
    if name not in _loaded:
        path = find_weights(name)
        if path is None:
            filename, folder = FILES[name]
            raise Depth2ImgError(f"The {name} depth estimator needs {filename}: put it in "
                                 f"{Path(paths_internal.models_path) / folder}.")
        _loaded.clear()  # one at a time: they are hundreds of MB each
        _loaded[name] = load_estimator_from_file(create_estimator(name), path)
    dtype = devices.dtype if devices.device.type == "cuda" else torch.float32
    return _loaded[name].to(device=devices.device, dtype=dtype)


def release(name: str) -> None:
    """Off the GPU after use under --medvram/--lowvram, or when the setting says so."""
    low_memory = shared.cmd_opts.medvram or shared.cmd_opts.lowvram
    if name in _loaded and (low_memory or shared.opts.data.get(option_keys.MOVE_TO_CPU, False)):
        _loaded[name].to(devices.cpu)
