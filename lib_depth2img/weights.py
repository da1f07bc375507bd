"""Loading estimator weights from a MiDaS release file or from a whole depth checkpoint.

Torch files are read with ``weights_only=True`` (no pickled code runs) and memory-mapped
when their layout allows; from ``.safetensors`` only the tensors needed are read.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, UNET_INPUT_KEY
from lib_depth2img.errors import Depth2ImgError

WHERE_WEIGHTS_LIVE = ("A MiDaS release file such as dpt_hybrid-midas-501f0c75.pt usually lives in the WebUI's "
                      "models/midas/ folder; a whole SD2 depth checkpoint such as 512-depth-ema.ckpt in "
                      "models/Stable-diffusion/.")


def _missing_file_error(path: Path) -> Depth2ImgError:
    return Depth2ImgError(f"Weights file {path} does not exist. Expected a MiDaS .pt/.safetensors file or an SD2 "
                          f"depth checkpoint. {WHERE_WEIGHTS_LIVE}")


def read_state_dict(path: str | os.PathLike, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a weights file whose names start with ``prefix``, with the prefix kept."""
    path = Path(path)
    if not path.is_file():
        raise _missing_file_error(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                return {k: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}  # noqa: SIM118 (not a dict)
        except (SafetensorError, OSError) as error:
            raise Depth2ImgError(f"Cannot read {path}: {error}. The file may be damaged or truncated.") from error
    try:
        # torch.serialization.load, not torch.load: the WebUI swaps torch.load for a checker that refuses
        # files newer torch writes (.format_version), and weights_only already refuses any code.
        # str, not Path: torch 2.1 memory-maps only files named by a string.
        obj = torch.serialization.load(str(path), map_location="cpu", weights_only=True,
                                       mmap=zipfile.is_zipfile(path))
    except Exception as error:  # torch raises many types for damaged or unsafe files
        raise Depth2ImgError(
            f"Cannot load {path} safely: {str(error).splitlines()[0]}. It may be damaged, or it may contain "
            "objects other than tensors; a .safetensors copy of it always loads.") from error
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise Depth2ImgError(f"{path} holds a {type(obj).__name__}, not a dictionary of weights.")
    return {k: v for k, v in obj.items() if isinstance(k, str) and k.startswith(prefix) and torch.is_tensor(v)}


def estimator_state_from_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Bare estimator weights from a MiDaS release file or from the depth slice of an SD2 depth checkpoint."""
    state = read_state_dict(path)
    depth_slice = {k[len(DEPTH_WEIGHTS_PREFIX):]: v for k, v in state.items() if k.startswith(DEPTH_WEIGHTS_PREFIX)}
    if depth_slice:
        return depth_slice
    if UNET_INPUT_KEY in state:
        raise Depth2ImgError(f"{path} is a Stable Diffusion checkpoint without MiDaS weights (no "
                             f"'{DEPTH_WEIGHTS_PREFIX}*' tensors). Use a MiDaS file such as "
                             "dpt_hybrid-midas-501f0c75.pt, usually in models/midas/.")
    return state


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
        parts.append("Check that the file matches the chosen estimator. " + WHERE_WEIGHTS_LIVE)
        raise Depth2ImgError(" ".join(parts))
    estimator.load_state_dict(state, strict=True)


def load_estimator_from_file(estimator: nn.Module, path: str | os.PathLike) -> nn.Module:
    load_estimator_weights(estimator, estimator_state_from_file(path), source=f"The weights in {path}")
    return estimator
