"""Depth estimators besides the checkpoint's own: found among the files people already have.

Looked up by the registry's file names and folders under the WebUI's ``models/``, and in the folders
ControlNet downloads to, so nobody keeps two copies. One is loaded at a time.
"""

from __future__ import annotations

from pathlib import Path

import torch
from modules import devices, paths_internal, shared
from torch import nn

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import ESTIMATORS, EstimatorSpec, create_estimator
from lib_depth2img.generation_args import EXTRA_ESTIMATORS
from lib_depth2img.webui import option_keys
from lib_depth2img.weights import load_estimator_from_file

_loaded: dict[str, nn.Module] = {}


def _folders(spec: EstimatorSpec) -> list[Path]:
    models = Path(paths_internal.models_path)
    controlnet = Path(paths_internal.extensions_dir) / "sd-webui-controlnet" / "annotator" / "downloads"
    return [root / folder for root in (models, controlnet) for folder in spec.folders]


def find_weights(name: str) -> Path | None:
    spec = ESTIMATORS[name]
    for folder in _folders(spec):
        for filename in spec.release_files:
            for candidate in (folder / filename, (folder / filename).with_suffix(".safetensors")):
                if candidate.is_file():
                    return candidate
    return None


def available() -> list[str]:
    return [name for name in EXTRA_ESTIMATORS if find_weights(name) is not None]


def check_available(name: str) -> Path:
    """The weights file of estimator ``name``, or the message saying which file goes where."""
    path = find_weights(name)
    if path is None:
        spec = ESTIMATORS[name]
        raise Depth2ImgError(f"Depth source '{name}' ({spec.title}) needs its weights file {spec.release_files[0]}: "
                             f"put it in {Path(paths_internal.models_path) / spec.folders[0]}, or choose another "
                             "depth source.")
    return path


def load(name: str) -> nn.Module:
    if name not in _loaded:
        path = check_available(name)
        _loaded.clear()  # one at a time: they are hundreds of MB each
        _loaded[name] = load_estimator_from_file(create_estimator(name), path)
    dtype = devices.dtype if devices.device.type == "cuda" else torch.float32
    return _loaded[name].to(device=devices.device, dtype=dtype)


def release(name: str) -> None:
    """Off the GPU after use under --medvram/--lowvram, or when the setting says so."""
    low_memory = shared.cmd_opts.medvram or shared.cmd_opts.lowvram
    if name in _loaded and (low_memory or shared.opts.data.get(option_keys.MOVE_TO_CPU, False)):
        _loaded[name].to(devices.cpu)
