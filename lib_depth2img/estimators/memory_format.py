"""Channels-last on CPU and CUDA: the convolutions' weights and the picture in NHWC order.

- CPU, where oneDNN runs them faster. Measured (CPU time, one thread, torch 2.1.2 and 2.13): DPT-Hybrid
  about 0.9x, MiDaS v2.1 small 0.90-0.92x; Depth Anything V2 Small unchanged, so it keeps the layout it
  is built with.
- CUDA, where cuDNN's half-precision kernels want NHWC: given NCHW they transpose into a workspace. On an
  H100 (torch 2.11, batch 4, float16) DPT-Hybrid's depth head took 216 MiB for one 3x3 convolution on
  NCHW against 36 MiB (its output) on NHWC, and the whole forward's peak rose 487 MiB against ldm's 304
  MiB. Time: 0.93-1.03x for DPT-Hybrid, DPT-Large and MiDaS v2.1 small across float32/16, bfloat16,
  batch 1 and 4.
- MPS keeps the built layout: nothing there has been measured.
"""

from __future__ import annotations

import torch
from torch import nn

_CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def memory_format_for(device: torch.device) -> torch.memory_format:
    return torch.channels_last if device.type in ("cpu", "cuda") else torch.contiguous_format


def match_memory_format(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory format that suits its device, after moving the convolution weights of ``module``
    to that format where they are not in it already (once per load or move: later calls only check)."""
    layout = memory_format_for(x.device)
    stale = [conv for conv in _convolutions(module)
             if conv.weight.dim() == 4 and not conv.weight.is_contiguous(memory_format=layout)]
    if stale:
        # Normal tensors even inside inference mode, so the module stays usable outside it.
        with torch.inference_mode(False), torch.no_grad():
            for conv in stale:
                conv.weight.data = conv.weight.data.contiguous(memory_format=layout)
    return x.contiguous(memory_format=layout)


def _convolutions(module: nn.Module) -> list[nn.Module]:
    cached = module.__dict__.get("_convolutions")
    if cached is None:
        cached = [m for m in module.modules()
                  if isinstance(m, _CONVOLUTIONS) and not getattr(m, "lays_out_its_own_weight", False)]
        module.__dict__["_convolutions"] = cached
    return cached
