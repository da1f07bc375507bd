"""ComfyUI's entry to this repository as a node pack (cloned into ``ComfyUI/custom_nodes/<any name>``).

ComfyUI imports this file as a package named after the folder. The WebUI and Forge never import it (they run
``install.py`` and ``scripts/``); pytest does, when it collects ``tests/`` below a folder with an
``__init__.py``, and then there is no ComfyUI to give nodes to: the mappings stay empty.

The core imports itself as ``lib_depth2img``, so the folder is put on ``sys.path`` for that one import and
taken off again: its other top-level names (``install``, ``scripts``, ``tests``) must not shadow another
pack's. Later imports inside ``lib_depth2img`` go through the package's own path.
"""

import importlib.util
import os
import sys

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

if importlib.util.find_spec("comfy") is not None:  # ComfyUI has imported it before it loads custom nodes
    _FOLDER = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, _FOLDER)
    try:
        from lib_depth2img.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
    finally:
        sys.path.remove(_FOLDER)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
