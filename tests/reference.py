"""Helpers that rebuild the inputs of the reference fixtures in tests/data (copied from shared/reference)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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


def depth_by_the_rule(network: torch.nn.Module, pictures: torch.Tensor, input_size: tuple[int, int],
                      mean: float | tuple[float, float, float] = 0.5, std: float | tuple[float, float, float] = 0.5,
                      output_size: tuple[int, int] | None = None, output_mode: str = "bicubic",
                      output_align_corners: bool = False) -> torch.Tensor:
    """MiDaS's input rule and forward, written out with torch alone (no code of ours but the network):
    RGB in [0, 1] resized bicubic to ``input_size`` (the caller works it out from the resize rule),
    ``(x - mean) / std``, one forward, then to ``output_size`` if given, as the official pipeline resizes
    back (MiDaS: bicubic; Depth Anything: bilinear, corners aligned). Float32 ``[B,1,h,w]``."""
    x = pictures.float()
    if tuple(x.shape[-2:]) != tuple(input_size):
        x = F.interpolate(x, size=input_size, mode="bicubic", align_corners=False)
    x = (x - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)
    with torch.no_grad():
        depth = network(x).unsqueeze(1).float()
    if output_size is not None and tuple(output_size) != tuple(depth.shape[-2:]):
        depth = F.interpolate(depth, size=output_size, mode=output_mode, align_corners=output_align_corners)
    return depth


def conditioning_by_the_rule(depth: torch.Tensor, latent_size: tuple[int, int]) -> torch.Tensor:
    """SD2 depth's training rule (ldm ``LatentDepth2ImageDiffusion``), written out: bicubic to the latent
    size, then for each picture alone ``2 * (d - min) / (max - min + 0.001) - 1``."""
    d = F.interpolate(depth.float(), size=latent_size, mode="bicubic", align_corners=False)
    low, high = d.amin(dim=(1, 2, 3), keepdim=True), d.amax(dim=(1, 2, 3), keepdim=True)
    return 2 * (d - low) / (high - low + 0.001) - 1


def inverted_by_hand(depth: torch.Tensor) -> torch.Tensor:
    """Near and far swapped within each map's own range: ``min + max - d``."""
    low, high = depth.amin(dim=(-2, -1), keepdim=True), depth.amax(dim=(-2, -1), keepdim=True)
    return low + high - depth


class FileCreatingPayload:
    """Pickles as a call of ``open(path, "w")``: if a loader runs pickled code, ``path`` appears."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))
