"""Depth from pictures: prepare, one batched forward in the estimator's own dtype and device, resize back."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.transforms import InputSpec, prepare_estimator_input


def _estimator_dtype_device(estimator: nn.Module) -> tuple[torch.dtype, torch.device]:
    for tensor in estimator.parameters():
        return tensor.dtype, tensor.device
    raise Depth2ImgError("The depth estimator has no weights.")


def estimate_depth(estimator: nn.Module, images: torch.Tensor, *, input_spec: InputSpec | None = None,
                   output_size: tuple[int, int] | None = None, device: torch.device | None = None) -> torch.Tensor:
    """RGB ``[B,3,H,W]`` in [0, 1], any float dtype and device -> float32 ``[B,1,H,W]`` relative inverse depth.

    ``output_size`` defaults to the pictures' own size; the WebUI passes the latent size so the
    estimator's output is resized once, as in training. The resize is the estimator's own
    (``input_spec.output_mode``), as its official pipeline does it. ``input_spec`` defaults to the one the
    estimator carries (ours do; the WebUI's loaded MiDaS needs it passed). ``device`` is where the
    forward runs, by default the estimator's; a host that moves modules in forward hooks
    (the WebUI's --lowvram) names its compute device.
    """
    spec = input_spec or getattr(estimator, "input_spec", None)
    if spec is None:
        raise Depth2ImgError("This depth estimator does not say how to prepare its input; pass input_spec.")
    prediction = predict_depth(estimator, prepare_estimator_input(images, spec), device=device)
    size = tuple(output_size) if output_size is not None else tuple(images.shape[-2:])
    return resize_depth(prediction, size, spec).to(images.device)


def predict_depth(estimator: nn.Module, x: torch.Tensor, *, device: torch.device | None = None) -> torch.Tensor:
    """The estimator's float32 ``[B,1,h,w]`` prediction for its prepared input ``x`` (``prepare_estimator_input``),
    at the input's size, on ``device`` (by default the estimator's)."""
    dtype, weights_device = _estimator_dtype_device(estimator)
    # Cast to the estimator's own dtype and device: the MPS "Input type and weight type should be the same" bug.
    x = x.to(device=device or weights_device, dtype=dtype)
    prediction = _forward_splitting_on_oom(estimator, x)
    if prediction.ndim == 3:
        prediction = prediction.unsqueeze(1)
    # A normal (not inference-mode) float32 copy: callers may use it under autograd or modify it in place.
    return prediction.to(dtype=torch.float32, copy=True)


def resize_depth(prediction: torch.Tensor, size: tuple[int, int], spec: InputSpec) -> torch.Tensor:
    """``prediction`` (``[B,1,h,w]``) at ``size``, resized as the estimator's official pipeline resizes it back:
    bicubic for MiDaS, bilinear with aligned corners for Depth Anything (a bicubic one moves its pixels by up to
    a tenth of the depth range)."""
    if tuple(prediction.shape[-2:]) == tuple(size):
        return prediction
    return F.interpolate(prediction, size=tuple(size), mode=spec.output_mode, align_corners=spec.output_align_corners)


def is_out_of_memory(error: BaseException) -> bool:
    """Python's, a GPU's or torch's CPU allocator's way of saying the memory ran out."""
    message = str(error).lower()
    return isinstance(error, (MemoryError, getattr(torch.cuda, "OutOfMemoryError", MemoryError))) or \
        "out of memory" in message or "can't allocate memory" in message


def _forward_splitting_on_oom(estimator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One forward for the whole batch; halves of it, recursively, only when the device runs out of memory."""
    try:
        with torch.inference_mode():
            return estimator(x)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        if x.shape[0] == 1:
            raise Depth2ImgError("Not enough memory for the depth estimator even for one picture: use a smaller "
                                 "picture, or free memory (--medvram, or another estimator).") from error
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = x.shape[0] // 2
    return torch.cat([_forward_splitting_on_oom(estimator, x[:half]), _forward_splitting_on_oom(estimator, x[half:])])
