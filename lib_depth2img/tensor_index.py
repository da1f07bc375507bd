"""Names, shapes and dtypes of the tensors in a weights file, without reading tensor data.

The file's kind is told from its content (``weights_format``), not its name. A ``.safetensors``
file answers from its JSON header; a PyTorch file (``.ckpt``, ``.pt``, ``.pth``; zip or legacy
layout) from its pickle, read by ``torch_pickle``'s unpickler, which runs nothing the file names.
So a multi-GB checkpoint is inspected in milliseconds, and a malicious one cannot run code.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.torch_pickle import PickledTensor, TensorInfo, TorchCheckpoint, unwrap_state_dict
from lib_depth2img.weights_format import SAFETENSORS, identify_weights_file

__all__ = ["SAFETENSORS_DTYPES", "StoredTensor", "TensorInfo", "read_safetensors_entries", "read_tensor_index",
           "read_torch_tensors", "torch_state_records"]

SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                      "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class StoredTensor:
    info: TensorInfo
    start: int  # absolute byte offsets in the file
    end: int


def read_tensor_index(path: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of the file's state dict (a Lightning ``state_dict`` wrapper is unwrapped)."""
    path = Path(path)
    if identify_weights_file(path) == SAFETENSORS:
        return {name: entry.info for name, entry in read_safetensors_entries(path).items()}
    return {k: v.info if isinstance(v, PickledTensor) else v for k, v in torch_state_records(path)[1].items()}


def read_torch_tensors(path: str | Path, prefix: str = "", names=None) -> dict:
    """The tensors of a PyTorch file's state dict whose names start with ``prefix`` (and are among ``names``
    when given), read from the file."""
    checkpoint, state = torch_state_records(Path(path))
    shared_storages: dict = {}
    return {k: checkpoint.load(v, shared_storages) for k, v in state.items()
            if k.startswith(prefix) and (names is None or k in names) and isinstance(v, PickledTensor)}


def torch_state_records(path: Path) -> tuple[TorchCheckpoint, dict]:
    """The opened file and its state dict's tensor records, by name (data not read yet)."""
    checkpoint = TorchCheckpoint(path, identify_weights_file(path))
    state = unwrap_state_dict(checkpoint.root)
    return checkpoint, {k: v for k, v in state.items()
                        if isinstance(k, str) and isinstance(v, (PickledTensor, TensorInfo))}


def read_safetensors_entries(path: str | Path) -> dict[str, StoredTensor]:
    """Every tensor of a ``.safetensors`` file with where its bytes lie, for reading one tensor at a time."""
    path = Path(path)
    if identify_weights_file(path) != SAFETENSORS:
        raise Depth2ImgError(f"{path} is a PyTorch checkpoint, not a .safetensors file.")
    try:
        with path.open("rb") as f:
            return _safetensors_entries(f, path)
    except OSError as error:
        raise Depth2ImgError(f"Cannot read {path}: {error.strerror or error}.") from error


def _safetensors_entries(f: io.BufferedReader, path: Path) -> dict[str, StoredTensor]:
    size = path.stat().st_size
    header_len = struct.unpack("<Q", f.read(8))[0]
    if header_len > _MAX_HEADER:
        raise Depth2ImgError(f"{path} is damaged: its .safetensors header claims {header_len:,} bytes. "
                             "Get a fresh copy of the file.")
    try:
        header = json.loads(f.read(header_len))
        data_start = 8 + header_len
        entries = {name: StoredTensor(TensorInfo(tuple(entry["shape"]),
                                                 SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"])),
                                      data_start + entry["data_offsets"][0], data_start + entry["data_offsets"][1])
                   for name, entry in header.items() if name != "__metadata__"}
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, IndexError, AttributeError) as error:
        raise Depth2ImgError(f"{path} is damaged: its .safetensors header is not valid ({error}). "
                             "Get a fresh copy of the file.") from error
    data_end = max((entry.end for entry in entries.values()), default=data_start)
    if data_end > size:
        raise Depth2ImgError(f"{path} is cut short: its tensors need {data_end:,} bytes but the file has "
                             f"{size:,}. Get the file again.")
    return entries
