"""The depth maps of a generation in its results: in the gallery, and saved beside the pictures."""

from __future__ import annotations

import os

from modules import shared
from PIL import Image

from lib_depth2img.depth_image import depth_to_image
from lib_depth2img.webui import generation, option_keys, txt2img


def _depth_picture(p, state, index: int) -> Image.Image:
    maps = state.result.depth
    depth = maps[index % len(maps)]
    if state.txt2img and getattr(p, "enable_hr", False):  # at Hires fix's size, cropped as its pictures
        return depth_to_image(txt2img.depth_for_results(p, depth[None]))
    return depth_to_image(depth).resize((p.width, p.height))


def postprocess_image_after_composite(p) -> None:
    """The WebUI saves picture ``p.batch_index`` right after this hook: mark it for ``on_image_saved``."""
    state = generation.generation_for(p)
    if state is not None and shared.opts.data.get(option_keys.SAVE_DEPTH_MAPS, False):
        state.pending_save = p.batch_index


def on_image_saved(params) -> None:
    """Saves the depth map of the picture just saved beside it: same file name, ``-depth`` suffix."""
    state = generation.generation_for(params.p)
    if state is None or state.pending_save is None:
        return
    index, state.pending_save = state.pending_save, None
    _depth_picture(params.p, state, index).save(f"{os.path.splitext(params.filename)[0]}-depth.png")


def postprocess(p, processed) -> None:
    """Appends one depth map per distinct picture, each with the infotext of the picture it conditioned,
    so the gallery's save and info buttons still find an infotext at every index."""
    state = generation.finish(p)
    if state is None or not state.args.add_depth_to_results:
        return
    first = getattr(processed, "index_of_first_image", 0)
    infotexts = getattr(processed, "infotexts", None)
    for index in range(len(state.result.depth)):
        processed.images.append(_depth_picture(p, state, index))
        if infotexts is not None and first + index < len(infotexts):
            infotexts.append(infotexts[first + index])
