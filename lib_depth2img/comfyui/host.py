"""What ComfyUI gives the nodes: its model folders, its compute device and its memory policy.

The estimators' release files are looked up in model folders registered with ``folder_paths`` under the
registry's folder names (``models/midas``, ``models/depth_anything``, ...), so ``extra_model_paths.yaml``
entries of those names are searched too. ComfyUI throws a checkpoint's ``depth_model.*`` away when it loads
it, so the checkpoint's own estimator is read from the checkpoint file. One estimator is held at a time; it
runs on ComfyUI's device and goes back to where ComfyUI keeps idle models, and the cache is emptied.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import comfy.model_management as model_management
import folder_paths
import torch
from torch import nn

from lib_depth2img.depth_cache import DepthCache
from lib_depth2img.depth_source import CHECKPOINT_SOURCE, CheckpointDepth, choose_estimator
from lib_depth2img.estimators import ESTIMATORS
from lib_depth2img.held_estimator import HeldEstimator

DEPTH_CACHE = DepthCache()  # by picture content; emptied when the held estimator changes
HELD = HeldEstimator(cache=DEPTH_CACHE)
CHECKPOINT_DEPTH = CheckpointDepth()


def register_model_folders() -> None:
    """``models/<folder>`` for each folder the registry names, after any that ``extra_model_paths.yaml`` gave."""
    for spec in ESTIMATORS.values():
        for folder in spec.folders:
            folder_paths.add_model_folder_path(folder, os.path.join(folder_paths.models_dir, folder))


def weights_folders(name: str) -> list[Path]:
    """Where estimator ``name``'s release file may be, ComfyUI's own ``models/`` folder first."""
    spec = ESTIMATORS[name]
    found = [Path(path) for folder in spec.folders for path in folder_paths.get_folder_paths(folder)]
    own = Path(folder_paths.models_dir) / spec.folders[0]
    return sorted(found, key=lambda path: path != own)  # the message names the first: ComfyUI's own folder


def checkpoint_names() -> list[str]:
    return folder_paths.get_filename_list("checkpoints")


@contextmanager
def estimator(source: str, ckpt_name: str | None) -> Iterator[nn.Module]:
    """The estimator for ``source`` on ComfyUI's compute device while in use, then back where ComfyUI keeps
    idle models (the CPU unless --highvram/--gpu-only)."""
    checkpoint = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name) if source == CHECKPOINT_SOURCE \
        else None
    choice = choose_estimator(source, checkpoint=checkpoint, host_network=None, folders=weights_folders,
                              checkpoint_depth=CHECKPOINT_DEPTH, checkpoint_label=ckpt_name or "The checkpoint")
    device = model_management.get_torch_device()
    dtype = torch.float16 if model_management.should_use_fp16(device) else torch.float32
    if choice.from_checkpoint:
        network = HELD.from_checkpoint(choice.weights, choice.name, device, dtype)
    else:
        network = HELD.from_release_file(choice.name, choice.weights, device, dtype)
    try:
        yield network
    finally:
        HELD.move_to(model_management.unet_offload_device())
        model_management.soft_empty_cache()
