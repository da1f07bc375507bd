"""Stable Diffusion 2 depth-to-image: the core, free of any WebUI import."""

from lib_depth2img.errors import Depth2ImgError

__all__ = ["Depth2ImgError"]
