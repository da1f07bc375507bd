"""Weights read one tensor at a time, and a ``.safetensors`` file written as its tensors are made.

Reading seeks to a tensor's bytes instead of memory-mapping the file, so a multi-GB
conversion holds about one tensor in memory. The output is written to a new file made
exclusively beside its final name and renamed at the end (``output_files.replacing_file``):
an interrupted conversion leaves no half-written checkpoint, and a link planted at the
output's name is replaced, never written through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch

from lib_depth2img.conversion.plan import Planned
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.output_files import replacing_file
from lib_depth2img.safetensors_header import SAFETENSORS_DTYPES
from lib_depth2img.tensor_info import TensorInfo
from lib_depth2img.weights_file import WeightsFile

_CODES = {name: code for code, name in SAFETENSORS_DTYPES.items()}


class WeightsFilesSource:
    """The tensors of one weights file (any kind), or of the shards of one model."""

    def __init__(self, paths: Iterable[Path]):
        self._where: dict[str, WeightsFile] = {}
        for path in paths:
            weights = WeightsFile(path)
            self._where.update({name: weights for name in weights.index if weights.has_data(name)})
        self.index = {name: weights.index[name] for name, weights in self._where.items()}

    def read(self, name: str) -> torch.Tensor:
        return self._where[name].tensor(name)


class StateDictSource:
    """Tensors already in memory, behind the same two members."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self._state = state
        self.index = {k: TensorInfo(tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()}

    def read(self, name: str) -> torch.Tensor:
        return self._state[name]


class CombinedSource:
    """Several sources as one, each tensor named ``<component>/<name>``."""

    def __init__(self, sources: dict[str, object]):
        self._sources = sources
        self.index = {f"{c}/{name}": info for c, source in sources.items() for name, info in source.index.items()}

    def read(self, name: str) -> torch.Tensor:
        component, _, inner = name.partition("/")
        return self._sources[component].read(inner)


def write_safetensors(path: Path, parts: list[tuple[str, list[Planned]]], source, float_dtype: torch.dtype,
                      metadata: dict[str, str] | None = None) -> None:
    """Write every planned tensor of every part, floating ones as ``float_dtype``, with a progress bar per part."""
    from tqdm import tqdm

    dtypes = {p.name: _output_dtype(p, source, float_dtype) for _, plan in parts for p in plan}
    # transformers refuses safetensors files whose metadata lacks the format
    header, offset = {"__metadata__": {"format": "pt", **(metadata or {})}}, 0
    for _, plan in parts:
        for p in plan:
            size = torch.Size(p.shape).numel() * dtypes[p.name].itemsize
            header[p.name] = {"dtype": _CODES[str(dtypes[p.name]).removeprefix("torch.")], "shape": list(p.shape),
                              "data_offsets": [offset, offset + size]}
            offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the format aligns tensor data to 8 bytes
    with replacing_file(path) as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for label, plan in parts:
            for p in tqdm(plan, desc=f"{path.name}: {label}", unit="tensor"):
                tensor = p.make([source.read(s) for s in p.sources]).to(dtypes[p.name]).contiguous()
                if tuple(tensor.shape) != p.shape:
                    raise Depth2ImgError(f"{p.name} came out {tuple(tensor.shape)}, expected {p.shape}.")
                f.write(tensor.reshape(-1).view(torch.uint8).numpy().data)


def _output_dtype(p: Planned, source, float_dtype: torch.dtype) -> torch.dtype:
    dtype = getattr(torch, source.index[p.sources[0]].dtype) if p.sources else p.make([]).dtype
    return float_dtype if dtype.is_floating_point and not p.keep_dtype else dtype
