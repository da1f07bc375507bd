"""Names, shapes and dtypes of the tensors in a weights file, without reading tensor data.

The file's kind is told from its content (``weights_format``), not its name, and its index is read and
checked by ``WeightsFile``: a ``.safetensors`` header as the safetensors library checks it, a PyTorch file
(``.ckpt``, ``.pt``, ``.pth``; zip or legacy layout) by ``torch_pickle``'s unpickler, which imports and
runs nothing the file names. So a multi-GB checkpoint is inspected in milliseconds, and a malicious one
cannot run code.
"""

from __future__ import annotations

import os

from lib_depth2img.safetensors_header import SAFETENSORS_DTYPES, StoredTensor
from lib_depth2img.tensor_info import TensorInfo
from lib_depth2img.weights_file import WeightsFile

__all__ = ["SAFETENSORS_DTYPES", "StoredTensor", "TensorInfo", "read_tensor_index"]


def read_tensor_index(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Every tensor of the file's state dict (a Lightning ``state_dict`` wrapper is unwrapped)."""
    return WeightsFile(path).index
