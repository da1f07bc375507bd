"""Helpers that rebuild the inputs of the reference fixtures in tests/data (copied from shared/reference)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).parent / "data"


def load_reference(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def reference_layout(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v[0]) for k, v in load_reference(name)["tensors"].items()}


def synthetic_image(height: int, width: int) -> np.ndarray:
    """The fixtures' test picture: HxWx3 float32 RGB in [0, 1] (formula from the fixture files)."""
    y = np.arange(height, dtype=np.float64)[:, None]
    x = np.arange(width, dtype=np.float64)[None, :]
    red = np.broadcast_to(x / (width - 1), (height, width))
    green = np.broadcast_to(y / (height - 1), (height, width))
    blue = 0.5 + 0.5 * np.sin(2 * np.pi * (x / 37.0 + y / 53.0))
    return np.stack([red, green, blue], axis=-1).astype(np.float32)


def synthetic_batch(height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(synthetic_image(height, width)).permute(2, 0, 1)[None].contiguous()


_RULE_SEQUENCE = np.zeros(0)


def _rule_sequence(n: int) -> np.ndarray:
    """u(n) = ((arange(n) * 0.61803) % 1.0) - 0.5; element i does not depend on n, so one sequence serves all."""
    global _RULE_SEQUENCE
    if len(_RULE_SEQUENCE) < n:
        _RULE_SEQUENCE = ((np.arange(n, dtype=np.float64) * 0.61803) % 1.0) - 0.5
    return _RULE_SEQUENCE[:n]


def rule_weights(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Weights set by the parity fixture's 'weight_rule': each tensor from its key and shape alone."""
    state = {}
    for key, shape in layout.items():
        n = math.prod(shape)
        u = _rule_sequence(n)
        if len(shape) >= 2:
            values = u * 4.0 / math.sqrt(n // shape[0])
        elif key.endswith("weight"):
            values = 1.0 + 0.1 * u
        else:
            values = 0.1 * (u + 0.5)
        state[key] = torch.from_numpy(values.reshape(shape)).float()
    return state


class FileCreatingPayload:
    """Pickles as a call of ``open(path, "w")``: if a loader runs pickled code, ``path`` appears."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))
