"""The one estimator a host holds: loaded from a file, kept while that file is unchanged, moved where the host says.

Estimators are hundreds of MB each, so a host holds one at a time: asking for another (or for the same file
after it changed on disk) lets the one held before go first. Where the weights come from (a release file, the
depth slice of a checkpoint) and where they run (device, dtype) are the host's to say; so is when they leave
the compute device again (``move_to``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint_estimator import load_checkpoint_estimator
from lib_depth2img.depth_cache import DepthCache
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_from_file

CHECKPOINT_SLICE = "checkpoint"  # what ``loaded``'s keys say of an estimator read from a checkpoint's depth slice


class HeldEstimator:
    def __init__(self, cache: DepthCache | None = None):
        self.loaded: dict[tuple, nn.Module] = {}  # (what, file, size, mtime) -> the estimator; one entry at most
        self._cache = cache  # emptied when the estimator changes: its entries are keyed by the module's id

    def _get(self, what: str, path: Path, load: Callable[[], nn.Module], device: torch.device | str,
             dtype: torch.dtype) -> nn.Module:
        stat = path.stat()
        key = (what, str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self.loaded:
            self.loaded.clear()  # the one held before goes first: two would double the memory
            if self._cache is not None:
                self._cache.clear()
            self.loaded[key] = load()
        return self.loaded[key].to(device=device, dtype=dtype)

    def from_release_file(self, name: str, path: str | Path, device: torch.device | str,
                          dtype: torch.dtype = torch.float32) -> nn.Module:
        """Estimator ``name`` with the weights of its release file ``path``, on ``device``."""
        path = Path(path)
        return self._get(name, path, lambda: load_estimator_from_file(create_estimator(name, device="meta"), path),
                         device, dtype)

    def from_checkpoint(self, checkpoint: str | Path, name: str, device: torch.device | str,
                        dtype: torch.dtype = torch.float32) -> nn.Module:
        """Estimator ``name`` with the depth weights of ``checkpoint`` (only that slice is read), on ``device``."""
        path = Path(checkpoint)
        return self._get(CHECKPOINT_SLICE, path, lambda: load_checkpoint_estimator(path, name), device, dtype)

    def move_to(self, device: torch.device | str) -> None:
        """Off the compute device (or anywhere else) after use, when the host's memory policy says so."""
        for estimator in self.loaded.values():
            estimator.to(device)

    def clear(self) -> None:
        self.loaded.clear()
        if self._cache is not None:
            self._cache.clear()
