"""One weights file, opened once: its kind, its checked index, and its tensors read when asked for.

Whatever is asked of a file (is it a depth checkpoint, which estimator does it hold, load that estimator,
convert it) goes through one ``WeightsFile``: the file is identified from its first bytes once, and its
index (every tensor's name, shape, dtype and where its bytes lie) is read and checked against the file
once, by ``safetensors_header`` or ``torch_pickle``; tensor data is read only for the names asked for.
A ``.safetensors`` file's tensors stay backed by the file (a private, copy-on-write mapping) where the
system allows, so an estimator built on the meta device takes them without a second copy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.safetensors_header import StoredTensor, read_safetensors_header
from lib_depth2img.tensor_info import ITEM_SIZES, TensorInfo, torch_dtype
from lib_depth2img.torch_pickle import TorchCheckpoint
from lib_depth2img.weights_format import SAFETENSORS, identify_weights_file


class WeightsFile:
    """``kind`` (``weights_format.SAFETENSORS``, ``TORCH_ZIP`` or ``TORCH_LEGACY``) and ``index`` (every tensor
    of the file's state dict, a Lightning or MiDaS wrapper unwrapped); a bad file raises ``Depth2ImgError``."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.kind = identify_weights_file(self.path)
        try:
            self._size = self.path.stat().st_size
            if self.kind == SAFETENSORS:
                with self.path.open("rb") as file:
                    self._stored: dict[str, StoredTensor] = read_safetensors_header(self.path, file, self._size)
                self.index: dict[str, TensorInfo] = {name: entry.info for name, entry in self._stored.items()}
            else:
                self._checkpoint = TorchCheckpoint(self.path, self.kind)
                self._records = self._checkpoint.state_records()
                self.index = {name: record.info for name, record in self._records.items()}
        except OSError as error:
            raise Depth2ImgError(f"Cannot read {self.path}: {error.strerror or error}.") from error

    def has_data(self, name: str) -> bool:
        """Whether the tensor ``name`` was saved with its data (not from the meta device)."""
        return name in self.index and (self.kind == SAFETENSORS or self._records[name].storage is not None)

    def read(self, names: Iterable[str]) -> dict[str, torch.Tensor]:
        """The tensors called ``names`` that the file holds with data; other names are left out."""
        wanted = [name for name in dict.fromkeys(names) if self.has_data(name)]
        if sys.byteorder != "little":
            raise Depth2ImgError("Weights files hold little-endian numbers, and this reader does not convert them "
                                 "for this big-endian machine.")
        if self.kind != SAFETENSORS:
            shared_storages: dict = {}
            return {name: self._checkpoint.load(self._records[name], shared_storages) for name in wanted}
        mapped = self._mapped(wanted)
        return mapped if mapped is not None else {name: self.tensor(name) for name in wanted}

    def read_prefix(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors whose names start with ``prefix``, the prefix kept."""
        return self.read(name for name in self.index if name.startswith(prefix))

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor in memory of its own: for going through a large file a tensor at a time."""
        if self.kind != SAFETENSORS:
            return self._checkpoint.load(self._records[name])
        entry = self._stored[name]
        data = torch.empty(entry.end - entry.start, dtype=torch.uint8)
        try:
            with self.path.open("rb") as file:
                file.seek(entry.start)
                got = file.readinto(data.numpy())
        except OSError as error:
            raise Depth2ImgError(f"Cannot read {self.path}: {error.strerror or error}.") from error
        if got != len(data):
            raise Depth2ImgError(f"{self.path} ended inside the tensor {name}: it was cut short while being read.")
        return data.view(self._dtype(entry)).reshape(entry.info.shape)

    def _dtype(self, entry: StoredTensor) -> torch.dtype:
        dtype = torch_dtype(entry.info.dtype)
        if dtype is None:
            raise Depth2ImgError(f"{self.path} holds {entry.info.dtype} tensors, which this reader (or this torch) "
                                 "cannot load.")
        return dtype

    def _mapped(self, names: list[str]) -> dict[str, torch.Tensor] | None:
        """The tensors as views of a private (copy-on-write) mapping of the file, or None where that cannot be.

        Only on POSIX systems: Windows would lock the file against deletion and replacement while an
        estimator holds it. The mapping lives as long as any of the tensors; writes to them never reach
        the file."""
        entries = {name: self._stored[name] for name in names}
        if os.name != "posix" or not entries:
            return None
        dtypes = {name: self._dtype(entry) for name, entry in entries.items()}
        if any(entry.start % ITEM_SIZES[entry.info.dtype] for entry in entries.values()):
            return None  # an unaligned tensor (not written by safetensors' own writer) cannot be a view
        try:
            if self.path.stat().st_size != self._size:  # a mapping past the end of a shrunk file would crash
                raise Depth2ImgError(f"{self.path} changed while being read; try again.")
            storage = torch.UntypedStorage.from_file(str(self.path), False, self._size)
        except (OSError, RuntimeError):
            return None
        data = torch.empty(0, dtype=torch.uint8).set_(storage)
        return {name: data[entry.start:entry.end].view(dtypes[name]).reshape(entry.info.shape)
                for name, entry in entries.items()}
