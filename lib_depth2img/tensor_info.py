"""What one stored tensor is (its shape and element type) and the element types, from one fixed table.

A dtype is named as torch names it (``"float16"``); a name read from a file is looked up in this
table, never on the torch module, so a file cannot make us import or call anything by naming it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

ITEM_SIZES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "complex128": 16, "complex64": 8,
              "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint64": 8, "uint32": 4, "uint16": 2, "uint8": 1,
              "bool": 1, "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
              "float8_e8m0fnu": 1}
# the same fixed names, resolved once; a torch too old for a dtype just lacks it here
_TORCH_DTYPES = {name: getattr(torch, name) for name in ITEM_SIZES
                 if isinstance(getattr(torch, name, None), torch.dtype)}


class TensorInfo(NamedTuple):  # a tuple: an index of a million entries is built in a second
    shape: tuple[int, ...]
    dtype: str


def torch_dtype(name: str) -> torch.dtype | None:
    """The torch dtype called ``name`` in the table; None for a name outside it or one this torch lacks."""
    return _TORCH_DTYPES.get(name)


def shape_text(shape) -> str:
    """A shape for a message, cut short: a hostile file can claim a million dimensions."""
    text = str(list(shape))
    return text if len(text) <= 80 else text[:76] + "...]"
