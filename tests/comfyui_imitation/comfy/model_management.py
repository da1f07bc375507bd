"""comfy/model_management.py (a125cd84): the device functions the pack calls, for ComfyUI started with --cpu.

``vram_state`` stands as there: HIGH_VRAM (--highvram, --gpu-only) keeps idle models on the compute device.
``torch_device`` lets a test name another compute device; ``empty_cache_calls`` counts ``soft_empty_cache``.
"""

from enum import Enum

import torch


class VRAMState(Enum):
    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


vram_state = VRAMState.NORMAL_VRAM
torch_device = torch.device("cpu")
gpu_only = False
empty_cache_calls = 0


def get_torch_device():
    return torch_device


def is_device_cpu(device):
    return hasattr(device, "type") and device.type == "cpu"


def should_use_fp16(device=None, model_params=0, prioritize_performance=True, manual_cast=False):
    return device is not None and not is_device_cpu(device) and device.type != "meta"


def unet_offload_device():
    if vram_state == VRAMState.HIGH_VRAM:
        return get_torch_device()
    return torch.device("cpu")


def intermediate_device():
    return get_torch_device() if gpu_only else torch.device("cpu")


def soft_empty_cache(force=False):
    global empty_cache_calls
    empty_cache_calls += 1
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cast_to_device(tensor, device, dtype, copy=False):
    return tensor.to(device=device, dtype=dtype, copy=copy)
