"""A ``.safetensors`` header, read and checked as the safetensors library checks it.

The rules are the library's (``Metadata::validate`` in its src/tensor.rs, and serde_json's parser), so the
files it refuses are refused here and the files it reads are read alike: a JSON object (nested at most
127 deep; no NaN, no lone surrogate, numbers within a double's range) of tensor entries, each a ``dtype``
from the format's table, a ``shape`` of non-negative integers and two ``data_offsets`` (as an object, or
the three in that order as a list), plus an optional ``__metadata__`` of strings. Sorted by their offsets,
the tensors tile the data area from 0 to the end of the file without gap or overlap, each exactly as many
bytes as its shape and dtype make.

The header may hold at most 16 MiB where the library allows 100 MB: a full Stable Diffusion checkpoint's
is about 0.2 MiB, and parsing costs some 15 times a header's size in memory. Measured on two cores
(``tests/benchmark_hostile_weights.py``): a 16 MiB header of 245,000 one-byte tensors takes about 4 s and
250 MiB; a 100 MB one would take 8 s and 860 MiB in ``json.loads`` alone.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, NamedTuple

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.tensor_info import TensorInfo, shape_text

MAX_HEADER_BYTES = 16 * 2**20
# the format's dtype codes -> torch's names; the last three are not bytes and no torch reads them
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "C64": "complex64",
                      "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U64": "uint64",
                      "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
                      "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
                      "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
                      "F4": "F4", "F6_E2M3": "F6_E2M3", "F6_E3M2": "F6_E3M2"}
_BITS = {"F64": 64, "C64": 64, "I64": 64, "U64": 64, "F32": 32, "I32": 32, "U32": 32, "F16": 16, "BF16": 16,
         "I16": 16, "U16": 16, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6}  # the rest: 8
_FIELDS = ("dtype", "shape", "data_offsets")
_FIELD_SET = set(_FIELDS)
_INT = {int}
_U64_MAX = 2**64 - 1
_MAX_DEPTH = 127  # serde_json's recursion limit, the outermost object counted
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_A_SIZE = object()  # a JSON integer that is no unsigned 64-bit number: fine in metadata, never in a shape


class StoredTensor(NamedTuple):
    info: TensorInfo
    start: int  # absolute byte offsets in the file
    end: int


def read_safetensors_header(path: Path, file: BinaryIO, size: int) -> dict[str, StoredTensor]:
    """Every tensor of the ``.safetensors`` file open as ``file`` (``size`` bytes), with where its bytes lie."""
    file.seek(0)
    header_len = int.from_bytes(file.read(8), "little")
    if header_len > MAX_HEADER_BYTES:
        raise Depth2ImgError(f"{path} is damaged or made to exhaust memory: its .safetensors header claims "
                             f"{header_len:,} bytes, more than the {MAX_HEADER_BYTES // 2**20} MiB this reader "
                             "accepts (a real checkpoint's is well under 1 MiB). Get a fresh copy of the file.")
    if header_len > size - 8:
        raise Depth2ImgError(f"{path} is a .safetensors file cut short: its header alone needs {header_len + 8:,} "
                             f"bytes but the file has {size:,}. Get the file again.")
    header = _parse(file.read(header_len), path)
    return _tiled(path, _entries(header, path), 8 + header_len, size)


def _parse(raw: bytes, path: Path) -> dict:
    try:
        text = raw.decode("utf-8")
        header = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                            parse_constant=_not_json)
    except RecursionError as error:
        raise _damaged(path, "its header is nested deeper than JSON readers allow") from error
    except ValueError as error:  # UnicodeDecodeError and JSONDecodeError among them
        raise _damaged(path, f"its header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise _damaged(path, "its header is not a JSON object")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(header):
        raise _damaged(path, "its header holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text")
    return header


def _entries(header: dict, path: Path) -> list[tuple[str, str, tuple[int, ...], int, int]]:
    if "__metadata__" in getattr(header, "repeated", ()):
        raise _damaged(path, "its header has two __metadata__ entries")
    metadata = header.get("__metadata__")
    if metadata is not None and not (isinstance(metadata, dict) and all(isinstance(v, str)
                                                                        for _, v in _pairs(metadata))):
        raise _damaged(path, "its __metadata__ is not a map of strings")
    # a name given twice: the last entry counts, but every one must be a valid entry, as in the library
    fields = {name: _tensor_fields(name, entry, path) for name, entry in _pairs(header) if name != "__metadata__"}
    return [(name, *entry) for name, entry in fields.items()]


def _tensor_fields(name: str, entry, path: Path) -> tuple[str, tuple[int, ...], int, int]:
    if type(entry) is dict and entry.keys() == _FIELD_SET:  # as every writer writes it; checked below
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    elif isinstance(entry, list) and len(entry) == len(_FIELDS):
        dtype, shape, offsets = entry
    elif isinstance(entry, dict):
        missing = [field for field in _FIELDS if field not in entry]
        twice = [field for field in _FIELDS if field in getattr(entry, "repeated", ())]
        if missing or twice:
            raise _damaged(path, f"tensor {_shown(name)} has {'no' if missing else 'two'} "
                                 f"{(missing or twice)[0]}")
        dtype, shape, offsets = (entry[field] for field in _FIELDS)
        for key, value in _pairs(entry):
            if key not in _FIELDS and _deeper_than(value, _MAX_DEPTH - 2):
                raise _damaged(path, f"tensor {_shown(name)} has an entry nested deeper than JSON readers allow")
    else:
        raise _damaged(path, f"the entry of tensor {_shown(name)} is not an object of dtype, shape and data_offsets")
    if not (isinstance(dtype, str) and dtype in SAFETENSORS_DTYPES):
        raise _damaged(path, f"tensor {_shown(name)} has the dtype {_shown(dtype)}, which is none of the format's "
                             f"({', '.join(SAFETENSORS_DTYPES)})")
    if not (isinstance(shape, list) and set(map(type, shape)) <= _INT):  # a bool is no size either
        raise _damaged(path, f"the shape of tensor {_shown(name)} is not a list of non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and set(map(type, offsets)) <= _INT):
        raise _damaged(path, f"the data_offsets of tensor {_shown(name)} are not two non-negative integers")
    return dtype, tuple(shape), offsets[0], offsets[1]


def _tiled(path: Path, entries: list, data_start: int, size: int) -> dict[str, StoredTensor]:
    """The entries, once their offsets are shown to tile the data area exactly."""
    entries.sort(key=itemgetter(3, 4))
    stored, end_so_far = {}, 0
    for name, dtype, shape, start, end in entries:
        if start != end_so_far or end < start:
            where = "overlaps the tensor before it" if start < end_so_far else \
                "leaves a gap before it" if start > end_so_far else "ends before it starts"
            raise _damaged(path, f"tensor {_shown(name)} (data_offsets [{start}, {end}]) {where}")
        numel = _element_count(shape)
        bits = None if numel is None else numel * _BITS.get(dtype, 8)
        if bits is None or bits > _U64_MAX * 8:
            raise _damaged(path, f"the shape of tensor {_shown(name)} is too large to be stored")
        if bits % 8 or end - start != bits // 8:
            raise _damaged(path, f"tensor {_shown(name)} has {end - start:,} bytes, but its shape "
                                 f"{shape_text(shape)} of {dtype} needs {bits / 8:,g}")
        stored[name] = StoredTensor(TensorInfo(shape, SAFETENSORS_DTYPES[dtype]), data_start + start, data_start + end)
        end_so_far = end
    if data_start + end_so_far < size:
        raise _damaged(path, f"it has {size - data_start - end_so_far:,} bytes after its last tensor, which the "
                             "format does not allow")
    if data_start + end_so_far > size:
        raise Depth2ImgError(f"{path} is cut short: its tensors need {data_start + end_so_far:,} bytes but the file "
                             f"has {size:,}. Get the file again.")
    return stored


def _element_count(shape: tuple[int, ...]) -> int | None:
    """prod(shape) as the library counts it, in 64 bits: None where that overflows on the way, even before a 0."""
    if len(shape) <= 8:  # few factors: one quick product, unless it may have overflowed before a 0
        numel = math.prod(shape)
        if 0 < numel <= _U64_MAX or 0 not in shape:
            return numel if numel <= _U64_MAX else None
    numel = 1
    for dim in shape:  # a million factors would make a number too big to multiply out
        numel *= dim
        if numel > _U64_MAX:
            return None
    return numel


class _RepeatedKeys(dict):
    """A JSON object that names some key more than once: the last one counts, as in the library's maps,
    and ``pairs`` keeps the others, which the library parses and checks all the same."""

    repeated: set
    pairs: list


def _object(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = _RepeatedKeys(obj)
        obj.repeated = {key for key, count in Counter(key for key, _ in pairs).items() if count > 1}
        obj.pairs = pairs
    return obj


def _pairs(obj: dict) -> list:
    """Every key and value of a JSON object as written, repeated keys included."""
    return getattr(obj, "pairs", None) or list(obj.items())


def _children(item) -> list:
    if isinstance(item, dict):
        return [part for pair in _pairs(item) for part in pair]
    return item if isinstance(item, list) else []


def _integer(text: str):
    if text[0] != "-" and len(text) <= 20:
        value = int(text)
        if value <= _U64_MAX:
            return value
    if len(text) > 300 and math.isinf(float(text)):  # the library reads such a number as a double
        raise ValueError("a number is out of range")
    return _NOT_A_SIZE


def _float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number is out of range")
    return value


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON value")


def _deeper_than(value, levels: int) -> bool:
    """Whether ``value`` nests containers more than ``levels`` deep."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > levels:
                return True
            pending.extend((child, depth + 1) for child in _children(item))
    return False


def _has_lone_surrogate(value) -> bool:
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str) and _SURROGATE.search(item):
            return True
        pending.extend(_children(item))
    return False


def _shown(value) -> str:
    if isinstance(value, (list, dict)) or value is _NOT_A_SIZE:
        return "a list" if isinstance(value, list) else "an object" if isinstance(value, dict) else "a number"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _damaged(path: Path, what: str) -> Depth2ImgError:
    return Depth2ImgError(f"{path} is damaged: {what}. Get a fresh copy of the file.")
