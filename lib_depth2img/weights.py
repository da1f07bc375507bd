"""Loading estimator weights from a MiDaS release file or from a whole depth checkpoint.

PyTorch files are read by our own restricted unpickler (no pickled code runs, whatever else the
file holds); from both kinds only the tensors needed are read.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, UNET_INPUT_KEY
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import where_weights_live
from lib_depth2img.tensor_index import read_safetensors_entries, read_tensor_index, read_torch_tensors
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

    read_safetensors_entries(path)  # a damaged header or a file cut short gets our message, not the library's
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()  # noqa: SIM118 (not a dict)
                    if k.startswith(prefix) and (names is None or k in names)}
    except (SafetensorError, OSError) as error:
        raise Depth2ImgError(f"{path} is damaged ({error}). Get a fresh copy of the file.") from error


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
    """Strict load: every key and shape must match; a mismatch lists what is missing and unexpected."""
    expected = estimator.state_dict()
    # BatchNorm's step counters are optional: release files may predate them, and eval never reads them.
    state = {**{k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}, **state}
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
    estimator.load_state_dict(state, strict=True)


def load_estimator_from_file(estimator: nn.Module, path: str | os.PathLike) -> nn.Module:
    load_estimator_weights(estimator, estimator_state_from_file(path), source=f"The weights in {path}")
    return estimator
