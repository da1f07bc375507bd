"""Which estimator gives a generation its depth, for any host.

Depth of a depth checkpoint comes from its own weights: the host's loaded network when it holds them (no
second copy), else our estimator read from the checkpoint file's ``depth_model.*`` slice. A checkpoint that
carries none takes the host's network as the host filled it, or, on a host without one, MiDaS DPT-Hybrid's
release file. Any other estimator comes from its release file, looked up in the folders the host names
(the WebUI's ``models/``, ComfyUI's model folders). The host loads what is chosen (``held_estimator``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from lib_depth2img.checkpoint_estimator import checkpoint_estimator_name, holds_checkpoint_weights
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import CHECKPOINT_ESTIMATOR, ESTIMATORS
from lib_depth2img.weights_file import WeightsFile

CHECKPOINT_SOURCE = "checkpoint"  # the depth checkpoint's own estimator, whatever its kind
WeightsFolders = Callable[[str], Sequence[Path]]  # estimator name -> the folders its release file may be in


def find_weights(name: str, folders: Sequence[Path]) -> Path | None:
    """The first of estimator ``name``'s release files (or its ``.safetensors`` twin) in ``folders``."""
    spec = ESTIMATORS[name]
    for folder in folders:
        for filename in spec.release_files:
            for candidate in (Path(folder) / filename, (Path(folder) / filename).with_suffix(".safetensors")):
                if candidate.is_file():
                    return candidate
    return None


def check_available(name: str, folders: Sequence[Path]) -> Path:
    """The weights file of estimator ``name``, or the message saying which file goes where (``folders[0]``)."""
    path = find_weights(name, folders)
    if path is None:
        spec = ESTIMATORS[name]
        where = f"put it in {folders[0]}" if folders else "put it in a folder the host searches"
        raise Depth2ImgError(f"Depth source '{name}' ({spec.title}) needs its weights file {spec.release_files[0]}: "
                             f"{where}, or choose another depth source.")
    return path


class CheckpointDepth:
    """Whether a checkpoint's depth must be read from its file, told once per (host network, file state)."""

    def __init__(self):
        self._known: dict[tuple, str | None] = {}

    def estimator_to_load(self, checkpoint: str | os.PathLike, host_network: nn.Module | None) -> str | None:
        """The estimator to build from the checkpoint file, or None where the host's network is the one to use:
        it holds the checkpoint's depth weights, or the checkpoint carries none."""
        stat = os.stat(checkpoint)
        key = (id(host_network), str(checkpoint), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            opened = WeightsFile(checkpoint)  # identified and indexed once for both questions
            name = checkpoint_estimator_name(opened)
            filled = name is None or (host_network is not None and holds_checkpoint_weights(host_network, opened))
            self._known[key] = None if filled else name
        return self._known[key]

    def forget(self) -> None:
        """A new checkpoint (or host network) is loaded: what was told of the old one may no longer hold."""
        self._known.clear()


@dataclass(frozen=True)
class EstimatorChoice:
    name: str | None          # the registry's estimator; None: the host's own network, whose kind the host tells
    weights: Path | None      # the file its weights are read from; None: the host's own network
    from_checkpoint: bool = False  # ``weights`` is a checkpoint whose depth slice holds them


def choose_estimator(source: str, *, checkpoint: str | os.PathLike | None, host_network: nn.Module | None,
                     folders: WeightsFolders, checkpoint_depth: CheckpointDepth,
                     checkpoint_label: str = "This checkpoint") -> EstimatorChoice:
    """Where the depth for ``source`` (``"checkpoint"`` or an estimator's name) comes from.

    ``checkpoint`` is the depth checkpoint's file (read only for the ``"checkpoint"`` source); ``host_network``
    the host's loaded MiDaS network, if it has one. A missing file is told before anything loads."""
    if source != CHECKPOINT_SOURCE:
        return EstimatorChoice(source, check_available(source, folders(source)))
    if checkpoint is None:
        raise Depth2ImgError("The 'checkpoint' depth source needs the depth checkpoint's file: choose one.")
    name = checkpoint_depth.estimator_to_load(checkpoint, host_network)
    if name is not None:
        return EstimatorChoice(name, Path(checkpoint), from_checkpoint=True)
    if host_network is not None:
        return EstimatorChoice(None, None)
    try:  # the checkpoint carries no depth weights and the host has no network
        release_file = check_available(CHECKPOINT_ESTIMATOR, folders(CHECKPOINT_ESTIMATOR))
    except Depth2ImgError as error:
        raise Depth2ImgError(f"{checkpoint_label} carries no MiDaS weights. {error}") from error
    return EstimatorChoice(CHECKPOINT_ESTIMATOR, release_file)
