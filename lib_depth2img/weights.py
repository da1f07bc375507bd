"""Loading estimator weights from a MiDaS release file or from a whole depth checkpoint.

PyTorch files are read by our own restricted unpickler (no pickled code runs, whatever else the
file holds); from both kinds only the tensors needed are read. A ``.safetensors`` file's tensors
stay backed by the file (a copy-on-write mapping) where the system allows: an estimator built on
the meta device takes them as they are, so its weights cost page cache, not a second copy.
"""

from __future__ import annotations

import inspect
import os
import sys
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, UNET_INPUT_KEY
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import where_weights_live
from lib_depth2img.tensor_index import StoredTensor, read_safetensors_entries, read_tensor_index, read_torch_tensors
from lib_depth2img.weights_format import SAFETENSORS, identify_weights_file


def read_state_dict(path: str | os.PathLike, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a weights file whose names start with ``prefix``, with the prefix kept.

    The file's kind comes from its content; a damaged or foreign file says what it is."""
    return _read(Path(path), prefix, None)


def read_named_tensors(path: str | os.PathLike, names) -> dict[str, torch.Tensor]:
    """Only the tensors called ``names`` (those the file has), each read from the file."""
    return _read(Path(path), "", set(names))


def _read(path: Path, prefix: str, names: set[str] | None) -> dict[str, torch.Tensor]:
    if identify_weights_file(path) != SAFETENSORS:
        return read_torch_tensors(path, prefix, names)
    from safetensors import SafetensorError, safe_open

    # A damaged header or a file cut short gets our message, not the library's.
    entries = {k: v for k, v in read_safetensors_entries(path).items()
               if k.startswith(prefix) and (names is None or k in names)}
    mapped = _mapped_safetensors(path, entries)
    if mapped is not None:
        return mapped
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in entries}
    except (SafetensorError, OSError) as error:
        raise Depth2ImgError(f"{path} is damaged ({error}). Get a fresh copy of the file.") from error


def _mapped_safetensors(path: Path, entries: dict[str, StoredTensor]) -> dict[str, torch.Tensor] | None:
    """The tensors as views of a private (copy-on-write) mapping of the file, or None where that cannot be.

    Only on POSIX systems: Windows would lock the file against deletion and replacement while an
    estimator holds it. The mapping lives as long as any of the tensors; writes to them never reach
    the file."""
    if os.name != "posix" or sys.byteorder != "little" or not entries:
        return None
    dtypes = {k: getattr(torch, entry.info.dtype, None) for k, entry in entries.items()}
    if not all(isinstance(dtype, torch.dtype) for dtype in dtypes.values()):
        return None  # a dtype this torch lacks: the library's reader says so
    itemsizes = {k: torch.empty(0, dtype=dtype).element_size() for k, dtype in dtypes.items()}
    if any(entry.start % itemsizes[k] for k, entry in entries.items()):
        return None  # an unaligned tensor (not written by safetensors' own writer) cannot be a view
    try:
        size = path.stat().st_size
        storage = torch.UntypedStorage.from_file(str(path), False, size)
    except (OSError, RuntimeError):
        return None
    data = torch.empty(0, dtype=torch.uint8).set_(storage)
    return {k: data[entry.start:entry.end].view(dtypes[k]).reshape(entry.info.shape) for k, entry in entries.items()}


def estimator_state_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Bare estimator weights from a release file or from the depth slice of an SD2 depth checkpoint.

    Only the tensors needed are read: a 5 GB checkpoint costs its 0.5 GB depth slice."""
    if not Path(path).exists():
        raise Depth2ImgError(f"Weights file {path} does not exist. {where_weights_live()}")
    index = read_tensor_index(path)
    if any(k.startswith(DEPTH_WEIGHTS_PREFIX) for k in index):
        state = read_state_dict(path, DEPTH_WEIGHTS_PREFIX)
        return {k[len(DEPTH_WEIGHTS_PREFIX):]: v for k, v in state.items()}
    if UNET_INPUT_KEY in index:
        raise Depth2ImgError(f"{path} is a Stable Diffusion checkpoint without depth-estimator weights (no "
                             f"'{DEPTH_WEIGHTS_PREFIX}*' tensors). {where_weights_live()}")
    return read_state_dict(path)


def load_estimator_weights(estimator: nn.Module, state: dict[str, torch.Tensor], source: str = "the weights") -> None:
    """Strict load: every key and shape must match; a mismatch lists what is missing and unexpected.

    An estimator built on the meta device (``create_estimator(name, device="meta")``) takes the
    state's tensors themselves, cast only where the dtype differs: the weights exist once, and the
    state must not be changed afterwards. Any other estimator gets a copy."""
    expected = estimator.state_dict()
    # BatchNorm's step counters are optional: release files may predate them, and eval never reads them.
    counters = {k: torch.zeros((), dtype=v.dtype) if v.is_meta else v
                for k, v in expected.items() if k.endswith("num_batches_tracked")}
    state = {**counters, **state}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        name = getattr(estimator, "estimator_name", type(estimator).__name__)
        parts = [f"{source} do not fit the {name} depth estimator."]
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("with another shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
                parts.append(f"{len(keys)} {label}: {shown}.")
        parts.append("Check that the file matches the chosen estimator. " + where_weights_live())
        raise Depth2ImgError(" ".join(parts))
    if any(tensor.is_meta for tensor in expected.values()):
        _load_into_meta_module(estimator, state, expected)
    else:
        estimator.load_state_dict(state, strict=True)


_ASSIGN_SUPPORTED = "assign" in inspect.signature(nn.Module.load_state_dict).parameters  # torch >= 2.1


def _load_into_meta_module(estimator: nn.Module, state: dict[str, torch.Tensor],
                           expected: dict[str, torch.Tensor]) -> None:
    state = {k: v.to(expected[k].dtype) if v.is_floating_point() and expected[k].is_floating_point() else v
             for k, v in state.items()}
    if _ASSIGN_SUPPORTED:
        estimator.load_state_dict(state, strict=True, assign=True)
    else:  # older torch: allocate, then copy in
        estimator.to_empty(device=next(iter(state.values())).device)
        estimator.load_state_dict(state, strict=True)
    materialise_computed_buffers(estimator)


def materialise_computed_buffers(module: nn.Module) -> None:
    """After a meta build and a load: buffers that no state dict holds are computed by their module's
    ``materialise_computed_buffers()``; anything still on the meta device is a fault of ours."""
    for submodule in module.modules():
        compute = getattr(type(submodule), "materialise_computed_buffers", None)
        if compute is not None:
            compute(submodule)
    left = [name for name, tensor in (*module.named_parameters(), *module.named_buffers()) if tensor.is_meta]
    if left:
        raise RuntimeError(f"{type(module).__name__} still has tensors without data after loading: "
                           f"{', '.join(left[:5])}. Its module must compute them in materialise_computed_buffers().")


def load_estimator_from_file(estimator: nn.Module, path: str | os.PathLike) -> nn.Module:
    load_estimator_weights(estimator, estimator_state_from_file(path), source=f"The weights in {path}")
    return estimator
