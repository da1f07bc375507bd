"""PyTorch checkpoints (zip and legacy layouts) read without importing or running anything the pickle names.

The unpickler looks every name up in fixed tables: torch's tensor-rebuilding functions become our record
makers (``PickledTensor``: shape, dtype, where the bytes lie), storage classes and dtypes become marks,
and every other name an inert ``Placeholder`` that accepts whatever the pickle does to it. So Lightning
checkpoints with callbacks, optimizer states and classes in their hyper-parameters read as well as a
bare ``state_dict()``, and a malicious file imports and runs nothing.

What could cost memory is bounded before it is spent. A pickle, and a zip file's directory, may hold at
most ``MAX_PICKLE_BYTES`` (a zip member is inflated only that far; bzip2 and lzma members, which torch
cannot read either, not at all): a full SD checkpoint's pickle is about 0.3 MiB and its directory 0.1 MiB,
and unpickling can cost some 75 bytes of memory per pickle byte. Python's own unpickler does the work,
whose memo is a dict (the C one's is an array as long as the largest index named: a 10-byte pickle cost
4 GiB). Every tensor must lie inside its storage and claim no more elements than it holds, and the
storages together must fit in the file, so reading every tensor costs at most the file's size.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.tensor_info import ITEM_SIZES, TensorInfo, shape_text, torch_dtype
from lib_depth2img.weights_format import TORCH_LEGACY, TORCH_LEGACY_MAGIC

MAX_PICKLE_BYTES = 8 * 2**20
_LEGACY_PROTOCOL = 1001
_STORAGE_CLASSES = {"DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
                    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
                    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
                    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
                    "UntypedStorage": "uint8"}
_INT64_LIMIT = 2**63
_MAX_DIMS = 64  # a million dimensions would make their product too big to multiply out


class _Malformed(Exception):
    """What is wrong with a pickle, said by the unpickler; the checkpoint adds the file's name."""


class _MadeByUs:
    """An object the unpickler made: a BUILD that would rewrite it is refused."""

    def __setstate__(self, state):
        raise _Malformed("it rewrites a tensor record after making it (a BUILD), which torch never writes")


@dataclass(frozen=True)
class StorageRef(_MadeByUs):
    key: str              # the stored storage: zip member data/<key>, or its place in a legacy file
    dtype: str
    numel: int            # elements of dtype
    byte_offset: int = 0  # a legacy view: where it begins inside the stored storage


@dataclass(frozen=True)
class PickledTensor(_MadeByUs):
    info: TensorInfo
    storage: StorageRef | None  # None: saved from the meta device, so it has no data
    offset: int = 0             # in elements, from the start of ``storage``
    stride: tuple[int, ...] = ()


@dataclass(frozen=True)
class _StorageClass(_MadeByUs):
    dtype: str

    def __call__(self, *args, **kwargs):
        return Placeholder()


@dataclass(frozen=True)
class _DType(_MadeByUs):
    dtype: str


class _Rebuild(_MadeByUs):
    """One of torch's tensor-rebuilding functions, as the pickle names it; calls our own record maker."""

    def __init__(self, make):
        self.make = make

    def __call__(self, *args, **kwargs):
        return self.make(*args, **kwargs)


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


def _natural(value) -> bool:
    return type(value) is int and 0 <= value < _INT64_LIMIT


def _record(storage, dtype: str | None, offset, size, stride) -> PickledTensor:
    """A tensor of ``dtype`` (None: the storage's own) over ``storage``, once it is shown to lie inside it."""
    if not isinstance(storage, StorageRef):
        raise _Malformed("a tensor's data is not one of its stored storages")
    dtype = dtype or storage.dtype
    if not (_natural(offset) and isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride)
            and len(size) <= _MAX_DIMS and all(_natural(n) for n in size) and all(_natural(s) for s in stride)):
        raise _Malformed(f"a tensor's shape, strides or offset are not up to {_MAX_DIMS} non-negative 64-bit "
                         "integers")
    available = storage.numel * ITEM_SIZES[storage.dtype] // ITEM_SIZES[dtype]
    numel = math.prod(size)
    shape = shape_text(size)
    if numel and offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True)) >= available:
        raise _Malformed(f"a tensor of shape {shape} reaches past the {available:,} elements of its storage")
    if numel > available:  # stride 0 repeats elements: a few stored bytes could claim terabytes
        raise _Malformed(f"a tensor of shape {shape} claims more elements than the {available:,} its storage holds")
    return PickledTensor(TensorInfo(size, dtype), storage, offset, stride)


def _rebuild_tensor(storage, offset, size, stride, *rest, **kwargs):  # v1 and v2: the storage's dtype
    return _record(storage, None, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, *rest, **kwargs):
    if not isinstance(dtype, _DType):
        raise _Malformed("a tensor's dtype is not a dtype")
    return _record(storage, dtype.dtype, offset, size, stride)


def _rebuild_meta_tensor(dtype, size, *rest, **kwargs):
    if not (isinstance(dtype, _DType) and isinstance(size, tuple) and len(size) <= _MAX_DIMS
            and all(_natural(n) for n in size)):
        raise _Malformed("a tensor saved without data has no valid dtype and shape")
    return PickledTensor(TensorInfo(size, dtype.dtype), None)


def _rebuild_parameter(data, *rest, **kwargs):
    return data


def _rebuild_from_type(func, new_type, args=(), *rest, **kwargs):  # tensor subclasses: the tensor inside
    return func(*args) if isinstance(func, _Rebuild) and isinstance(args, tuple) else Placeholder()


_REBUILDS = {("torch._utils", name): _Rebuild(make) for name, make in (
    ("_rebuild_tensor", _rebuild_tensor), ("_rebuild_tensor_v2", _rebuild_tensor),
    ("_rebuild_tensor_v3", _rebuild_tensor_v3), ("_rebuild_parameter", _rebuild_parameter),
    ("_rebuild_parameter_with_state", _rebuild_parameter), ("_rebuild_meta_tensor_no_storage", _rebuild_meta_tensor))}
_REBUILDS.update({(module, name): _Rebuild(_rebuild_from_type) for module in ("torch._tensor", "torch.tensor")
                  for name in ("_rebuild_from_type", "_rebuild_from_type_v2")})


class _RestrictedUnpickler(pickle._Unpickler):
    """Python's own unpickler, not the C one: that one grows its memo to the largest index a LONG_BINPUT
    names, so ten bytes could ask for gigabytes; this one keeps its memo in a dict."""

    def __init__(self, file, checkpoint: TorchCheckpoint):
        super().__init__(file, encoding="utf-8")  # as torch.load reads pickles from Python 2
        self.checkpoint = checkpoint

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return StateDict
        if (module, name) in _REBUILDS:
            return _REBUILDS[module, name]
        if module in ("torch", "torch.storage") and name in _STORAGE_CLASSES:
            return _StorageClass(_STORAGE_CLASSES[name])
        if module == "torch" and name in ITEM_SIZES:
            return _DType(name)
        return Placeholder

    def persistent_load(self, pid):
        legacy = self.checkpoint.layout == TORCH_LEGACY
        if legacy and isinstance(pid, tuple) and pid[:1] in (("module",), (b"module",)):
            return Placeholder()  # the source code of a whole pickled module (torch before 1.0)
        # zip: ("storage", class, key, location, numel); legacy: the same and a view (key, offset, numel) or None
        if not (isinstance(pid, tuple) and len(pid) == (6 if legacy else 5) and pid[0] in ("storage", b"storage")):
            raise _Malformed("it refers to tensor data in a way torch does not write")
        storage_class, key, numel, view = pid[1], pid[2], pid[4], pid[5] if legacy else None
        if not isinstance(storage_class, _StorageClass):
            return Placeholder()  # a storage of a kind not read here (quantized)
        if not (isinstance(key, str) and _natural(numel)):
            raise _Malformed("a tensor storage has no valid name or size")
        storages = self.checkpoint.storages
        root = storages.setdefault(key, StorageRef(key, storage_class.dtype, numel))
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str) and _natural(view[1])
                and _natural(view[2])):
            raise _Malformed("a view of a tensor storage is malformed")
        itemsize = ITEM_SIZES[storage_class.dtype]  # torch counts a view in its own reference's elements
        ref = self.checkpoint.views.setdefault(view[0], StorageRef(key, storage_class.dtype, view[2],
                                                                   view[1] * itemsize))
        if ref.byte_offset + ref.numel * itemsize > root.numel * ITEM_SIZES[root.dtype]:
            raise _Malformed("a view of a tensor storage reaches past the storage")
        return ref


class TorchCheckpoint:
    """A PyTorch file's unpickled contents, checked against the file, and the means to read any tensor in it."""

    def __init__(self, path: Path, layout: str):
        self.path, self.layout = path, layout
        self.storages: dict[str, StorageRef] = {}  # by key, as the pickle first names each
        self.views: dict[str, StorageRef] = {}     # legacy views, by their own key
        self._data_offsets: dict[str, int] = {}   # legacy: where each storage's bytes begin
        self._zip_members: dict[str, zipfile.ZipInfo] = {}
        self._zip_prefix = ""
        try:
            self.size = path.stat().st_size
            self.root = self._read_legacy() if layout == TORCH_LEGACY else self._read_zip()
        except Depth2ImgError:
            raise
        except _Malformed as error:
            raise Depth2ImgError(f"{path} is damaged or made by hand to mislead readers: {error}. "
                                 "Get a fresh copy of the file.") from error
        except Exception as error:  # anything a damaged pickle or archive makes the readers raise
            raise self._damaged(error) from error

    def state_records(self) -> dict[str, PickledTensor]:
        """The tensor records of the state dict inside (a Lightning or MiDaS wrapper unwrapped), by name."""
        return {k: v for k, v in unwrap_state_dict(self.root).items()
                if isinstance(k, str) and isinstance(v, PickledTensor)}

    def _damaged(self, error: Exception) -> Depth2ImgError:
        if isinstance(error, EOFError) or "truncated" in str(error):
            return self._cut_short(error)
        return Depth2ImgError(f"{self.path} is damaged: its contents are not a valid PyTorch checkpoint "
                              f"({type(error).__name__}: {str(error)[:200]}). Get a fresh copy of the file.")

    def _cut_short(self, error: Exception) -> Depth2ImgError:
        return Depth2ImgError(f"{self.path} is cut short ({error}): the download or copy did not finish. "
                              "Get the file again.")

    def _too_large(self, what: str, size: str) -> Depth2ImgError:
        return Depth2ImgError(f"{self.path} is damaged or made to exhaust memory: its {what} {size}, more than the "
                              f"{MAX_PICKLE_BYTES // 2**20} MiB this reader accepts (a full checkpoint's is well "
                              "under 1 MiB).")

    def _unpickle(self, file) -> object:
        return _RestrictedUnpickler(file, self).load()

    def _read_zip(self) -> object:
        with self.path.open("rb") as f:
            end = zipfile._EndRecData(f)  # the end record, which zipfile reads first too
        if end is None:
            raise self._cut_short(EOFError("its zip directory is missing"))
        if end[zipfile._ECD_SIZE] > MAX_PICKLE_BYTES:  # zipfile holds ten times its size in memory
            raise self._too_large("zip directory", f"claims {end[zipfile._ECD_SIZE]:,} bytes")
        with zipfile.ZipFile(self.path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pickles:
                raise Depth2ImgError(f"{self.path} is a zip archive but not a PyTorch checkpoint (no data.pkl "
                                     "inside).")
            self._zip_prefix = pickles[0][:-len("data.pkl")]
            self._zip_members = {info.filename: info for info in archive.infolist()}
            byteorder = self._zip_members.get(f"{self._zip_prefix}byteorder")
            if byteorder is not None and self._member_bytes(archive, byteorder, 16).strip() == b"big":
                raise Depth2ImgError(f"{self.path} was saved on a big-endian machine; load and save it again "
                                     "with torch on this one.")
            root = self._unpickle(io.BytesIO(self._member_bytes(archive, self._zip_members[pickles[0]],
                                                                MAX_PICKLE_BYTES)))
        self._check_zip_storages()
        return root

    def _member_bytes(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
        """A member's contents, inflated no further than ``limit`` bytes whatever its header claims."""
        name = info.filename[len(self._zip_prefix):]
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise Depth2ImgError(f"{self.path} is damaged or made to exhaust memory: its {name} is compressed with "
                                 f"method {info.compress_type} (bzip2 or lzma), which torch never writes and cannot "
                                 "read.")
        if info.file_size > limit:
            raise self._too_large(name, f"claims {info.file_size:,} bytes")
        with archive.open(info) as member:
            data = member.read(limit + 1)
        if len(data) > limit:
            raise self._too_large(name, f"inflates past {limit:,} bytes")
        return data

    def _check_zip_storages(self) -> None:
        for key, storage in self.storages.items():
            info = self._zip_members.get(f"{self._zip_prefix}data/{key}")
            if info is None:
                raise Depth2ImgError(f"{self.path} is damaged: the data of tensor storage {key[:40]!r} is missing.")
            if info.compress_type != zipfile.ZIP_STORED:
                raise Depth2ImgError(f"{self.path} holds its tensor data compressed, which torch never writes (it "
                                     "was repacked by another tool): load it with torch and save it again.")
            if info.file_size < storage.numel * ITEM_SIZES[storage.dtype]:
                raise Depth2ImgError(f"{self.path} is damaged: tensor storage {key[:40]!r} holds {info.file_size:,} "
                                     f"bytes, fewer than its tensors need. Get a fresh copy of the file.")
        self._check_total()

    def _check_total(self) -> None:
        total = sum(storage.numel * ITEM_SIZES[storage.dtype] for storage in self.storages.values())
        if total > self.size:
            raise Depth2ImgError(f"{self.path} is damaged or made to exhaust memory: its tensors claim {total:,} "
                                 f"bytes of data but the file has {self.size:,}. Get a fresh copy of the file.")

    def _read_legacy(self) -> object:
        # A run of pickles: magic number, protocol, system info, the object, the storage keys; then the data,
        # each storage as its element count (int64) and its bytes, in the order of the keys.
        with self.path.open("rb") as f:
            head = f.read(MAX_PICKLE_BYTES)
        pickles = io.BytesIO(head)
        try:
            magic, protocol, system = self._unpickle(pickles), self._unpickle(pickles), self._unpickle(pickles)
            root, keys = self._unpickle(pickles), self._unpickle(pickles)
        except (EOFError, pickle.UnpicklingError) as error:
            if len(head) == MAX_PICKLE_BYTES:
                raise self._too_large("pickle", f"goes on past {MAX_PICKLE_BYTES:,} bytes") from error
            raise
        if magic != int.from_bytes(TORCH_LEGACY_MAGIC[4:], "little") or protocol != _LEGACY_PROTOCOL:
            raise Depth2ImgError(f"{self.path} is damaged: its PyTorch magic number or protocol is wrong.")
        if isinstance(system, dict) and system.get("little_endian") is False:
            raise Depth2ImgError(f"{self.path} was saved on a big-endian machine; load and save it again with torch "
                                 "on this one.")
        if not (isinstance(keys, list) and all(isinstance(k, str) and k in self.storages for k in keys)
                and set(keys) == set(self.storages)):
            raise Depth2ImgError(f"{self.path} is damaged: its list of tensor storages does not match its contents.")
        self._locate_legacy_storages(keys, pickles.tell())
        return root

    def _locate_legacy_storages(self, keys: list[str], offset: int) -> None:
        with self.path.open("rb") as f:
            for key in keys:
                storage = self.storages[key]
                f.seek(offset)
                count = f.read(8)
                if len(count) == 8 and int.from_bytes(count, "little") != storage.numel:
                    raise Depth2ImgError(f"{self.path} is damaged: tensor storage {key[:40]!r} holds "
                                         f"{int.from_bytes(count, 'little'):,} elements where its tensors say "
                                         f"{storage.numel:,}. Get a fresh copy of the file.")
                self._data_offsets[key] = offset + 8
                offset += 8 + storage.numel * ITEM_SIZES[storage.dtype]
        if offset > self.size:
            raise self._cut_short(EOFError(f"its tensors need {offset:,} bytes, the file has {self.size:,}"))
        self._check_total()

    def load(self, record: PickledTensor, cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """The tensor a record describes, read from the file (storages shared through ``cache``)."""
        dtype = torch_dtype(record.info.dtype)
        if record.storage is None:
            raise Depth2ImgError(f"{self.path} holds a tensor saved without its data (from the meta device).")
        if dtype is None:
            raise Depth2ImgError(f"{self.path} holds {record.info.dtype} tensors, which this torch cannot read.")
        storage = record.storage
        cache = {} if cache is None else cache
        try:
            if storage.key not in cache:
                cache[storage.key] = self._read_storage(self.storages[storage.key])
            data = cache[storage.key][storage.byte_offset:storage.byte_offset + storage.numel
                                      * ITEM_SIZES[storage.dtype]]
            typed = data[:len(data) - len(data) % ITEM_SIZES[record.info.dtype]].view(dtype)
            return typed.as_strided(record.info.shape, record.stride, typed.storage_offset() + record.offset)
        except Depth2ImgError:
            raise
        except Exception as error:  # an unreadable member; the bounds were checked when the file was opened
            raise self._damaged(error) from error

    def _read_storage(self, storage: StorageRef) -> torch.Tensor:
        """A stored storage's bytes."""
        nbytes = storage.numel * ITEM_SIZES[storage.dtype]
        data = bytearray(nbytes)
        with self.path.open("rb") as f:
            f.seek(self._data_offset(f, storage.key))
            got = f.readinto(data)
        if got != nbytes:
            raise self._cut_short(EOFError(f"a tensor needs {nbytes:,} bytes, {got:,} are there"))
        return torch.frombuffer(data, dtype=torch.uint8) if nbytes else torch.empty(0, dtype=torch.uint8)

    def _data_offset(self, f, key: str) -> int:
        if self.layout == TORCH_LEGACY:
            return self._data_offsets[key]
        # torch stores members uncompressed: their bytes follow the local header, read one at a time
        info = self._zip_members[f"{self._zip_prefix}data/{key}"]
        f.seek(info.header_offset)
        local_header = f.read(30)
        if len(local_header) < 30 or not local_header.startswith(b"PK\x03\x04"):
            raise Depth2ImgError(f"{self.path} is damaged: the data of tensor storage {key[:40]!r} is not where its "
                                 "zip directory says.")
        return info.header_offset + 30 + int.from_bytes(local_header[26:28], "little") + \
            int.from_bytes(local_header[28:30], "little")


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
