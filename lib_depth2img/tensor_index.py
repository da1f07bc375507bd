"""Names, shapes and dtypes of the tensors in a weights file, without reading tensor data.

A ``.safetensors`` file answers from its JSON header. A torch file (``.ckpt``, ``.pt``,
``.pth``; zip or legacy layout) answers from its pickle, read by an unpickler that
never imports or calls anything the file names: tensors become ``TensorInfo`` records
and any other object an inert placeholder. So a multi-GB checkpoint is inspected in
milliseconds, and a malicious one cannot run code.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lib_depth2img.errors import Depth2ImgError

SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
                       "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool"}
_STORAGE_DTYPES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                   "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                   "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool"}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


def read_tensor_index(path: str | Path) -> dict[str, TensorInfo]:
    """Every tensor of the file's state dict (a Lightning ``state_dict`` wrapper is unwrapped)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            if path.suffix.lower() == ".safetensors":
                return _read_safetensors_header(f, path)
            return _state_dict_of(_read_torch_pickle(f, path))
    except OSError as error:
        raise Depth2ImgError(f"Cannot read {path}: {error.strerror or error}.") from error


@dataclass(frozen=True)
class StoredTensor:
    info: TensorInfo
    start: int  # absolute byte offsets in the file
    end: int


def read_safetensors_entries(path: str | Path) -> dict[str, StoredTensor]:
    """Every tensor of a ``.safetensors`` file with where its bytes lie, for reading one tensor at a time."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return _safetensors_entries(f, path)
    except OSError as error:
        raise Depth2ImgError(f"Cannot read {path}: {error.strerror or error}.") from error


def _read_safetensors_header(f: io.BufferedReader, path: Path) -> dict[str, TensorInfo]:
    return {name: entry.info for name, entry in _safetensors_entries(f, path).items()}


def _safetensors_entries(f: io.BufferedReader, path: Path) -> dict[str, StoredTensor]:
    size = path.stat().st_size
    raw = f.read(8)
    if len(raw) < 8:
        raise Depth2ImgError(f"{path} is not a valid .safetensors file: it is too short ({size} bytes).")
    header_len = struct.unpack("<Q", raw)[0]
    if header_len > min(_MAX_HEADER, size - 8):
        raise Depth2ImgError(f"{path} is not a valid .safetensors file: its header claims {header_len} bytes "
                             f"but the file has {size}. The file may be truncated; download it again.")
    try:
        header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Depth2ImgError(f"{path} is not a valid .safetensors file: its header is not JSON ({error}).") from error
    entries = {}
    data_start = 8 + header_len
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        info = TensorInfo(tuple(entry["shape"]), SAFETENSORS_DTYPES.get(entry["dtype"], entry["dtype"]))
        entries[name] = StoredTensor(info, data_start + begin, data_start + end)
    data_end = max((entry.end for entry in entries.values()), default=data_start)
    if data_end > size:
        raise Depth2ImgError(f"{path} is truncated: its tensors need {data_end} bytes "
                             f"but the file has {size}. Download it again.")
    return entries


class _Opaque(dict):
    """Stands in for any object the pickle names that is not a tensor: accepts everything, does nothing."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def __setstate__(self, state):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


@dataclass(frozen=True)
class _StorageType:
    dtype: str


def _rebuild_tensor(storage, offset, size, *rest):
    return TensorInfo(tuple(size), storage.dtype if isinstance(storage, _StorageType) else "unknown")


def _rebuild_parameter(data, *rest):
    return data


class _IndexUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return dict
        if module.startswith("torch"):
            if name in _STORAGE_DTYPES:
                return _StorageType(_STORAGE_DTYPES[name])
            if name.startswith("_rebuild_tensor"):
                return _rebuild_tensor
            if name.startswith("_rebuild_parameter"):
                return _rebuild_parameter
        return _Opaque

    def persistent_load(self, pid):
        # ("storage", storage_type, key, location, numel[, view]) in both zip and legacy layouts
        if isinstance(pid, tuple) and len(pid) > 1 and isinstance(pid[1], _StorageType):
            return pid[1]
        return _StorageType("unknown")


def _read_torch_pickle(f: io.BufferedReader, path: Path) -> object:
    if zipfile.is_zipfile(f):
        f.seek(0)
        try:
            with zipfile.ZipFile(f) as archive:
                pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
                if not pickles:
                    raise Depth2ImgError(f"{path} is a zip file but not a PyTorch checkpoint (no data.pkl inside).")
                return _IndexUnpickler(io.BytesIO(archive.read(pickles[0]))).load()
        except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, ValueError) as error:
            raise Depth2ImgError(f"{path} is damaged and cannot be inspected ({error}). Download it again.") from error
    f.seek(0)
    try:
        # The legacy layout is a run of pickles: magic number, protocol, system info, then the object.
        magic = _IndexUnpickler(f).load()
        if magic != 0x1950A86A20F9469CFC6C:
            raise pickle.UnpicklingError("no PyTorch magic number")
        for _ in range(2):
            _IndexUnpickler(f).load()
        return _IndexUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, IndexError, struct.error, TypeError) as error:
        raise Depth2ImgError(f"{path} cannot be inspected safely: it is neither a .safetensors file nor a PyTorch "
                             f"checkpoint ({error}). It may be truncated or of another format.") from error


def _state_dict_of(obj: object) -> dict[str, TensorInfo]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        return {}
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, TensorInfo)}
