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

from lib_depth2img.checkpoint_estimator import load_checkpoint_estimator
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import ESTIMATORS, EstimatorSpec, create_estimator
from lib_depth2img.generation_args import EXTRA_ESTIMATORS
from lib_depth2img.webui import option_keys
from lib_depth2img.weights import load_estimator_from_file

_loaded: dict[tuple, nn.Module] = {}  # (what, file, file state) -> the estimator; one entry at most


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


def where_files_go() -> str:
    """Each other depth source's release file and the folder it goes in, for /docs and messages."""
    by_folder: dict[Path, list[str]] = {}
    for name in EXTRA_ESTIMATORS:
        spec = ESTIMATORS[name]
        by_folder.setdefault(Path(paths_internal.models_path) / spec.folders[0], []).append(spec.release_files[0])
    return "; ".join(f"{', '.join(files)} in {folder}" for folder, files in by_folder.items())


def check_available(name: str) -> Path:
    """The weights file of estimator ``name``, or the message saying which file goes where."""
    path = find_weights(name)
    if path is None:
        spec = ESTIMATORS[name]
        raise Depth2ImgError(f"Depth source '{name}' ({spec.title}) needs its weights file {spec.release_files[0]}: "
                             f"put it in {Path(paths_internal.models_path) / spec.folders[0]}, or choose another "
                             "depth source.")
    return path


def _held(what: str, path: Path, load) -> nn.Module:
    stat = path.stat()
    key = (what, str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _loaded:
        _loaded.clear()  # the one held before goes first: two would double the memory
        _loaded[key] = load()
    dtype = devices.dtype if devices.device.type == "cuda" else torch.float32
    return _loaded[key].to(device=devices.device, dtype=dtype)


def load(name: str) -> nn.Module:
    path = check_available(name)
    return _held(name, path, lambda: load_estimator_from_file(create_estimator(name, device="meta"), path))


def load_from_checkpoint(checkpoint: str, name: str) -> nn.Module:
    """Estimator ``name`` with the depth weights of ``checkpoint``, on the compute device."""
    path = Path(checkpoint)
    return _held("checkpoint", path, lambda: load_checkpoint_estimator(path, name))


def release() -> None:
    """Off the GPU after use under --medvram/--lowvram, or when the setting says so."""
    low_memory = shared.cmd_opts.medvram or shared.cmd_opts.lowvram
    if low_memory or shared.opts.data.get(option_keys.MOVE_TO_CPU, False):
        for estimator in _loaded.values():
            estimator.to(devices.cpu)
