"""ComfyUI's nodes.py (a125cd84): how a custom node folder is loaded, and the latent nodes the workflows use."""

import importlib.util
import os
import sys

import comfy.model_management
import comfy.utils
import torch

NODE_CLASS_MAPPINGS = {}
NODE_DISPLAY_NAME_MAPPINGS = {}
LOADED_MODULE_DIRS = {}


def get_module_name(module_path: str) -> str:
    base_path = os.path.basename(module_path)
    if os.path.isfile(module_path):
        base_path = os.path.splitext(base_path)[0]
    return base_path


async def load_custom_node(module_path: str, ignore=set(), module_parent="custom_nodes") -> bool:  # noqa: B006
    """A folder is imported from its ``__init__.py``, as a package whose name is the folder's path (dots
    replaced), and its V1 mappings are merged into ComfyUI's. Errors are logged there and the pack skipped;
    here they propagate, so a test sees them."""
    module_name = get_module_name(module_path)
    sys_module_name = module_path.replace(".", "_x_")
    module_spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[sys_module_name] = module
    module_spec.loader.exec_module(module)
    LOADED_MODULE_DIRS[module_name] = os.path.abspath(module_path)
    if getattr(module, "NODE_CLASS_MAPPINGS", None) is not None:
        for name, node_cls in module.NODE_CLASS_MAPPINGS.items():
            if name not in ignore:
                NODE_CLASS_MAPPINGS[name] = node_cls
                node_cls.RELATIVE_PYTHON_MODULE = f"{module_parent}.{get_module_name(module_path)}"
        if getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) is not None:
            NODE_DISPLAY_NAME_MAPPINGS.update(module.NODE_DISPLAY_NAME_MAPPINGS)
        return True
    return False


class EmptyLatentImage:
    def generate(self, width, height, batch_size=1):
        device = comfy.model_management.intermediate_device()
        latent = torch.zeros([batch_size, 4, height // 8, width // 8], device=device)
        return ({"samples": latent},)


class LatentUpscale:
    def upscale(self, samples, upscale_method, width, height, crop):
        s = samples.copy()
        s["samples"] = comfy.utils.common_upscale(samples["samples"], width // 8, height // 8, upscale_method, crop)
        return (s,)
