"""The ComfyUI host: SD2 depth-to-image as nodes. The only package that imports ComfyUI (``comfy``,
``folder_paths``, ``node_helpers``); the repository's root ``__init__.py`` hands ComfyUI these mappings."""

from lib_depth2img.comfyui import channel_error, host
from lib_depth2img.comfyui.nodes import Depth2ImgConditioning, Depth2ImgEstimate, Depth2ImgLoadDepthMap

NODE_CLASS_MAPPINGS = {
    "Depth2ImgEstimate": Depth2ImgEstimate,
    "Depth2ImgConditioning": Depth2ImgConditioning,
    "Depth2ImgLoadDepthMap": Depth2ImgLoadDepthMap,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "Depth2ImgEstimate": "Depth estimate (SD2 depth)",
    "Depth2ImgConditioning": "Depth conditioning (SD2 depth)",
    "Depth2ImgLoadDepthMap": "Load depth map (16-bit)",
}

host.register_model_folders()
channel_error.install()
