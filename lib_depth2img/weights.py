"""Loading estimator weights from a MiDaS release file or from a whole depth checkpoint.

The file is opened once (``WeightsFile``): PyTorch files are read by our own restricted unpickler (no
pickled code runs, whatever else the file holds), and from both kinds only the tensors needed are read.
A ``.safetensors`` file's tensors stay backed by the file where the system allows: an estimator built on
the meta device takes them as they are, so its weights cost page cache, not a second copy. The weights
are set on the estimator's modules directly, never through ``load_state_dict``, which a host may have
replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, UNET_INPUT_KEY
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import where_weights_live
from lib_depth2img.weights_file import WeightsFile


def read_state_dict(path: str | os.PathLike, prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a weights file whose names start with ``prefix``, with the prefix kept.

    The file's kind comes from its content; a damaged or foreign file says what it is."""
    return WeightsFile(path).read_prefix(prefix)


def read_named_tensors(path: str | os.PathLike, names) -> dict[str, torch.Tensor]:
    """Only the tensors called ``names`` (those the file has), each read from the file."""
    return WeightsFile(path).read(names)


def open_weights(source: str | os.PathLike | WeightsFile) -> WeightsFile:
    """The weights file at ``source`` (one already open as it is), identified and indexed; missing, it says
    where weights belong."""
    if isinstance(source, WeightsFile):
        return source
    if not Path(source).exists():
        raise Depth2ImgError(f"Weights file {source} does not exist. {where_weights_live()}")
    return WeightsFile(source)


def estimator_state_from_file(weights: str | os.PathLike | WeightsFile) -> dict[str, torch.Tensor]:
    """Bare estimator weights from a release file or from the depth slice of an SD2 depth checkpoint.

    Only the tensors needed are read: a 5 GB checkpoint costs its 0.5 GB depth slice."""
    weights = open_weights(weights)
    if any(k.startswith(DEPTH_WEIGHTS_PREFIX) for k in weights.index):
        state = weights.read_prefix(DEPTH_WEIGHTS_PREFIX)
        return {k[len(DEPTH_WEIGHTS_PREFIX):]: v for k, v in state.items()}
    if UNET_INPUT_KEY in weights.index:
        raise Depth2ImgError(f"{weights.path} is a Stable Diffusion checkpoint without depth-estimator weights (no "
                             f"'{DEPTH_WEIGHTS_PREFIX}*' tensors). {where_weights_live()}")
    return weights.read(weights.index)


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
    meta = any(tensor.is_meta for tensor in expected.values())
    if meta:  # the state's tensors themselves, cast only where the dtype differs
        state = {k: v.to(expected[k].dtype) if v.is_floating_point() and expected[k].is_floating_point() else v
                 for k, v in state.items()}
    _set_weights(estimator, state, assign=meta)
    if meta:
        materialise_computed_buffers(estimator)


def _set_weights(module: nn.Module, state: dict[str, torch.Tensor], assign: bool) -> None:
    """Each parameter and persistent buffer set from ``state`` on its own module, as ``load_state_dict`` would.

    Not through ``load_state_dict``: the WebUI replaces it (and ``_load_from_state_dict``) while it loads a
    model, and two overlapping loads leave the replacement in place. ``assign`` takes the state's tensors
    themselves (parameters stay ``Parameter``s, with their ``requires_grad``), as ``assign=True`` does;
    otherwise they are copied into the module's own tensors."""
    with torch.no_grad():
        for prefix, submodule in module.named_modules(remove_duplicate=False):
            prefix = f"{prefix}." if prefix else ""
            for name, parameter in list(submodule._parameters.items()):
                if parameter is None:
                    continue
                if assign:
                    submodule._parameters[name] = nn.Parameter(state[prefix + name],
                                                               requires_grad=parameter.requires_grad)
                else:
                    parameter.copy_(state[prefix + name])
            for name, buffer in list(submodule._buffers.items()):
                if buffer is None or name in submodule._non_persistent_buffers_set:
                    continue
                if assign:
                    submodule._buffers[name] = state[prefix + name]
                else:
                    buffer.copy_(state[prefix + name])


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


def load_estimator_from_file(estimator: nn.Module, weights: str | os.PathLike | WeightsFile) -> nn.Module:
    weights = open_weights(weights)
    load_estimator_weights(estimator, estimator_state_from_file(weights), source=f"The weights in {weights.path}")
    return estimator
