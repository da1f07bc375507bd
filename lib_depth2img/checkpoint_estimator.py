"""A depth checkpoint's own estimator, read from the checkpoint file.

For hosts whose loaded model has no MiDaS network (Forge drops ``depth_model.*``), or one that was
never filled from the checkpoint (reForge and Forge Classic build it empty; an interrupted load):
depth must come from the checkpoint's weights, never from a network that was built empty. Only the
``depth_model.model.*`` slice is read (a ``.safetensors`` header first), and whether a host's network
holds those weights is told from two of its tensors.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, estimator_from_weights
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_weights, open_weights
from lib_depth2img.weights_file import WeightsFile


def checkpoint_estimator_name(checkpoint: str | os.PathLike | WeightsFile) -> str | None:
    """The estimator whose weights the checkpoint carries under ``depth_model.model.``, or None."""
    name = estimator_from_weights(open_weights(checkpoint).index)
    return None if name in (None, "unknown") else name


def load_checkpoint_estimator(path: str | os.PathLike, name: str) -> nn.Module:
    """Our estimator ``name`` with the checkpoint's depth weights (only that slice is read)."""
    estimator = create_estimator(name, device="meta")
    state = WeightsFile(path).read_prefix(DEPTH_WEIGHTS_PREFIX)
    state = {k[len(DEPTH_WEIGHTS_PREFIX):]: v for k, v in state.items()}
    load_estimator_weights(estimator, state, source=f"The depth weights in {Path(path).name}")
    return estimator


def holds_checkpoint_weights(network: nn.Module, checkpoint: str | os.PathLike | WeightsFile) -> bool:
    """Whether ``network`` carries the checkpoint's depth weights, told from its first and last tensors."""
    own = network.state_dict()
    keys = [k for k in own if own[k].is_floating_point()]
    probes = {DEPTH_WEIGHTS_PREFIX + key: key for key in (keys[0], keys[-1])} if keys else {}
    stored = open_weights(checkpoint).read(list(probes))
    if len(stored) != len(probes) or not probes:
        return False
    return all(stored[file_key].shape == own[key].shape
               and torch.equal(stored[file_key].to(own[key].dtype), own[key].detach().cpu())
               for file_key, key in probes.items())

