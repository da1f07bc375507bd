"""PyTorch checkpoints (zip and legacy layouts) read without running any code the pickle names.

The unpickler resolves no real global: tensors become ``PickledTensor`` records (shape, dtype,
where their bytes lie) and every other object an inert ``Placeholder`` that accepts whatever
the pickle does to it. So Lightning checkpoints with callbacks, optimizer states and classes
in their hyper-parameters read as well as a bare ``state_dict()``, and a malicious file runs
nothing. Tensor data is read only for the records asked for.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.weights_format import TORCH_LEGACY, TORCH_LEGACY_MAGIC

_STORAGE_DTYPES = {"Double": "float64", "Float": "float32", "Half": "float16", "BFloat16": "bfloat16",
                   "Long": "int64", "Int": "int32", "Short": "int16", "Char": "int8", "Byte": "uint8",
                   "Bool": "bool", "ComplexFloat": "complex64", "ComplexDouble": "complex128", "Untyped": "uint8"}


@dataclass(frozen=True)
class TensorInfo:
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: str
    numel: int
    view: tuple[str, int, int] | None = None  # legacy views of a bigger storage: (root key, offset, numel)


@dataclass(frozen=True)
class PickledTensor:
    info: TensorInfo
    storage: StorageRef
    offset: int
    stride: tuple[int, ...]


class Placeholder:
    """Any object the pickle names that is not a tensor: accepts every pickle operation, does nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return Placeholder()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


class StateDict(dict):
    """``collections.OrderedDict`` as ``state_dict()`` returns it: its ``_metadata`` attribute is dropped."""

    def __setstate__(self, state):
        pass


@dataclass(frozen=True)
class _DTypeMark:
    dtype: str

    def __call__(self, *args, **kwargs):
        return Placeholder()


def _rebuild_tensor(storage, offset=0, size=(), stride=(), *rest, **kwargs):
    if not isinstance(storage, StorageRef) or not _ints(size) or not _ints(stride) or not isinstance(offset, int):
        return Placeholder()
    return PickledTensor(TensorInfo(tuple(size), storage.dtype), storage, offset, tuple(stride))


def _rebuild_meta_tensor(dtype, size=(), *rest, **kwargs):
    if not isinstance(dtype, _DTypeMark) or not _ints(size):
        return Placeholder()
    return TensorInfo(tuple(size), dtype.dtype)  # no data: an index entry, never loadable


def _rebuild_parameter(data, *rest, **kwargs):
    return data


def _rebuild_from_type(func, new_type, args=(), *rest, **kwargs):
    return func(*args) if callable(func) and isinstance(args, tuple) else Placeholder()


def _ints(values) -> bool:
    return isinstance(values, (tuple, list)) and all(type(v) is int for v in values)


_TORCH_FUNCTIONS = {"_rebuild_tensor": _rebuild_tensor, "_rebuild_tensor_v2": _rebuild_tensor,
                    "_rebuild_parameter": _rebuild_parameter, "_rebuild_parameter_with_state": _rebuild_parameter,
                    "_rebuild_from_type": _rebuild_from_type, "_rebuild_from_type_v2": _rebuild_from_type,
                    "_rebuild_meta_tensor_no_storage": _rebuild_meta_tensor}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, storages: dict[str, StorageRef]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return StateDict
        if module == "torch" or module.startswith("torch."):
            if name.endswith("Storage") and name[:-len("Storage")] in _STORAGE_DTYPES:
                return _DTypeMark(_STORAGE_DTYPES[name[:-len("Storage")]])
            if name in _TORCH_FUNCTIONS:
                return _TORCH_FUNCTIONS[name]
            if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
                return _DTypeMark(name)
        return Placeholder

    def persistent_load(self, pid):
        # zip: ("storage", type, key, location, numel); legacy: the same plus view metadata
        if not (isinstance(pid, tuple) and len(pid) >= 5 and isinstance(pid[1], _DTypeMark)
                and isinstance(pid[2], str) and type(pid[4]) is int):
            return Placeholder()
        view = pid[5] if len(pid) > 5 else None
        if not (view is None or (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)
                                 and type(view[1]) is int and type(view[2]) is int)):
            return Placeholder()
        root = self.storages.setdefault(pid[2], StorageRef(pid[2], pid[1].dtype, pid[4]))
        return root if view is None else StorageRef(view[0], root.dtype, view[2], (root.key, view[1], view[2]))


class TorchCheckpoint:
    """The unpickled object of a PyTorch file, and the means to read the data of any tensor in it."""

    def __init__(self, path: Path, layout: str):
        self.path, self.layout = path, layout
        self.storages: dict[str, StorageRef] = {}
        self._data_offsets: dict[str, int] = {}  # legacy: where each storage's bytes begin
        self._zip_members: dict[str, zipfile.ZipInfo] = {}
        self._zip_prefix = ""
        try:
            self.root = self._read_legacy() if layout == TORCH_LEGACY else self._read_zip()
        except Depth2ImgError:
            raise
        except Exception as error:  # anything a damaged pickle or archive makes the readers raise
            raise self._damaged(error) from error

    def _damaged(self, error: Exception) -> Depth2ImgError:
        if isinstance(error, EOFError) or "truncated" in str(error):
            return self._cut_short(error)
        return Depth2ImgError(f"{self.path} is damaged: its contents are not a valid PyTorch checkpoint "
                              f"({type(error).__name__}: {error}). Get a fresh copy of the file.")

    def _cut_short(self, error: Exception) -> Depth2ImgError:
        return Depth2ImgError(f"{self.path} is cut short ({error}): the download or copy did not finish. "
                              "Get the file again.")

    def _unpickle(self, file) -> object:
        return _RestrictedUnpickler(file, self.storages).load()

    def _read_zip(self) -> object:
        if not zipfile.is_zipfile(self.path):
            raise self._cut_short(EOFError("its zip directory is missing"))
        with zipfile.ZipFile(self.path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pickles:
                raise Depth2ImgError(f"{self.path} is a zip archive but not a PyTorch checkpoint (no data.pkl "
                                     "inside).")
            self._zip_prefix = pickles[0][:-len("data.pkl")]
            self._zip_members = {info.filename: info for info in archive.infolist()}
            byteorder = f"{self._zip_prefix}byteorder"
            if byteorder in archive.namelist() and archive.read(byteorder).strip() == b"big":
                raise Depth2ImgError(f"{self.path} was saved on a big-endian machine; load and save it again "
                                     "with torch on this one.")
            return self._unpickle(io.BytesIO(archive.read(pickles[0])))

    def _read_legacy(self) -> object:
        # A run of pickles: magic number, protocol, system info, the object, the storage keys; then the data,
        # each storage as its element count (int64) and its bytes, in the order of the keys.
        with self.path.open("rb") as f:
            if self._unpickle(f) != int.from_bytes(TORCH_LEGACY_MAGIC[4:], "little"):
                raise Depth2ImgError(f"{self.path} is damaged: its PyTorch magic number is wrong.")
            self._unpickle(f), self._unpickle(f)
            root = self._unpickle(f)
            keys = self._unpickle(f)
            offset, size = f.tell(), self.path.stat().st_size
        if not (isinstance(keys, list) and all(k in self.storages for k in keys)):
            raise Depth2ImgError(f"{self.path} is damaged: its list of tensor storages does not match its contents.")
        for key in keys:
            storage = self.storages[key]
            self._data_offsets[key] = offset + 8
            offset += 8 + storage.numel * _element_size(storage.dtype)
        if offset > size:
            raise self._cut_short(EOFError(f"its tensors need {offset:,} bytes, the file has {size:,}"))
        return root

    def load(self, record: PickledTensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The tensor a record describes, read from the file (storages shared through ``cache``)."""
        storage = record.storage
        root_key, start, numel = storage.view or (storage.key, 0, storage.numel)
        cache = {} if cache is None else cache
        try:
            if root_key not in cache:
                cache[root_key] = self._read_storage(self.storages[root_key])
            return cache[root_key][start:start + numel].as_strided(record.info.shape, record.stride, record.offset)
        except Depth2ImgError:
            raise
        except Exception as error:  # a tensor reaching past its data, an unreadable member
            raise self._damaged(error) from error

    def _read_storage(self, storage: StorageRef) -> torch.Tensor:
        dtype = getattr(torch, storage.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise Depth2ImgError(f"{self.path} holds {storage.dtype} tensors, which this torch cannot read.")
        nbytes = storage.numel * _element_size(storage.dtype)
        with self.path.open("rb") as f:
            f.seek(self._data_offset(f, storage.key))
            data = bytearray(f.read(nbytes))
        if len(data) != nbytes:
            raise self._cut_short(EOFError(f"a tensor needs {nbytes:,} bytes, {len(data):,} are there"))
        return torch.frombuffer(data, dtype=dtype) if nbytes else torch.empty(0, dtype=dtype)


    def _data_offset(self, f, key: str) -> int:
        if self.layout == TORCH_LEGACY:
            return self._data_offsets[key]
        # torch stores members uncompressed: their bytes follow the local header, read one at a time
        info = self._zip_members.get(f"{self._zip_prefix}data/{key}")
        if info is None or info.compress_type != zipfile.ZIP_STORED:
            raise Depth2ImgError(f"{self.path} is damaged: the data of tensor storage {key} is missing.")
        f.seek(info.header_offset)
        local_header = f.read(30)
        if len(local_header) < 30 or not local_header.startswith(b"PK\x03\x04"):
            raise Depth2ImgError(f"{self.path} is damaged: the data of tensor storage {key} is not where its "
                                 "zip directory says.")
        return info.header_offset + 30 + int.from_bytes(local_header[26:28], "little") + \
            int.from_bytes(local_header[28:30], "little")


def _element_size(dtype: str) -> int:
    resolved = getattr(torch, dtype, None)
    return torch.empty(0, dtype=resolved).element_size() if isinstance(resolved, torch.dtype) else 1


def unwrap_state_dict(obj: object) -> dict:
    """The state dict inside a checkpoint: Lightning's ``state_dict`` or MiDaS's ``model`` beside an
    ``optimizer``, else the object itself; ``{}`` when it holds none."""
    if isinstance(obj, dict):
        if isinstance(obj.get("state_dict"), dict):
            return obj["state_dict"]
        if "optimizer" in obj and isinstance(obj.get("model"), dict):
            return obj["model"]
        return obj
    return {}
