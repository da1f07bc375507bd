"""Depth that costs nothing the second time: estimator outputs kept by picture content.

What is kept is the estimator's raw output, before any adjustment, so changing invert, levels,
gamma or blur still hits. Bounded by memory, oldest out first; the host empties it when the
checkpoint (and so the estimator's weights) changes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
from torch import nn

from lib_depth2img.depth import estimate_depth
from lib_depth2img.transforms import InputSpec


class DepthCache:
    def __init__(self, max_bytes: int = 256 * 2**20):
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def _key(estimator: nn.Module, picture: torch.Tensor, spec: InputSpec, size: tuple[int, int]) -> tuple:
        content = hashlib.sha256(picture.detach().float().cpu().contiguous().numpy()).hexdigest()  # no bytes copy
        weights = next(estimator.parameters())
        return id(estimator), str(weights.dtype), spec, tuple(size), tuple(picture.shape), content

    def estimate(self, estimator: nn.Module, pictures: torch.Tensor, *, input_spec: InputSpec,
                 output_size: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
        """As ``estimate_depth``, with the pictures seen before taken from the cache and the rest in one forward."""
        keys = [self._key(estimator, picture, input_spec, output_size) for picture in pictures]
        depths = {}
        for index, key in enumerate(keys):
            if key in self._entries:
                self._entries.move_to_end(key)
                depths[index] = self._entries[key]
        missing = [index for index in range(len(keys)) if index not in depths]
        self.hits += len(depths)
        self.misses += len(missing)
        if missing:
            # indexing by a list copies the batch: a large picture's copy was the endpoint's biggest cost
            unseen = pictures if len(missing) == len(keys) else pictures[missing]
            fresh = estimate_depth(estimator, unseen, input_spec=input_spec, output_size=output_size, device=device)
            for index, depth in zip(missing, fresh.cpu(), strict=True):
                depths[index] = depth
                self._store(keys[index], depth)
        return torch.stack([depths[index] for index in range(len(keys))]).to(pictures.device)

    def _store(self, key: tuple, depth: torch.Tensor) -> None:
        size = depth.numel() * depth.element_size()
        if size > self.max_bytes:
            return
        self._entries[key] = depth
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= evicted.numel() * evicted.element_size()
