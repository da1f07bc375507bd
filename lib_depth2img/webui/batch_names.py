"""Which file of the img2img Batch tab a picture came from, for depth maps matched by file name.

The Batch tab reads each file and applies the EXIF orientation, which makes a copy without the
file name. So the tab's ``process_batch`` is wrapped once at start-up to note its input files
while it runs, and a picture is matched by its pixels to those files read the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lib_depth2img.errors import Depth2ImgError

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")  # what the Batch tab reads, and depth maps
_running = {"inputs": None, "by_content": None}  # the Batch tab run in progress, if any


def install_batch_tracking() -> None:
    from modules import img2img, shared

    if getattr(img2img.process_batch, "depth2img_tracking", False):
        return
    process_batch = img2img.process_batch

    def tracking_process_batch(p, input, *args, **kwargs):
        # the same listing the WebUI's process_batch makes
        if isinstance(input, str):
            files = list(shared.walk_files(input, allowed_extensions=SUFFIXES))
        else:
            files = [os.path.abspath(x.name) for x in input]
        _running.update(inputs=files, by_content=None)
        try:
            return process_batch(p, input, *args, **kwargs)
        finally:
            _running.update(inputs=None, by_content=None)

    tracking_process_batch.depth2img_tracking = True
    img2img.process_batch = tracking_process_batch


def _content_key(picture: Image.Image) -> str:
    return hashlib.sha256(np.asarray(picture.convert("RGB")).tobytes()).hexdigest()


def source_name(picture: Image.Image) -> str | None:
    """The file stem a picture was read from: its own ``filename``, else the Batch tab file with its pixels."""
    own = getattr(picture, "filename", "") or ""
    if own:
        return Path(own).stem
    if _running["inputs"] is None:
        return None
    if _running["by_content"] is None:
        from modules import images

        by_content = {}
        for path in _running["inputs"]:
            try:
                by_content.setdefault(_content_key(ImageOps.exif_transpose(images.read(path))), path)
            except OSError:
                continue  # the WebUI skips unreadable files too
        _running["by_content"] = by_content
    path = _running["by_content"].get(_content_key(picture))
    return Path(path).stem if path else None


def files_named_like(folder: str, pictures: list, what: str) -> list[Path | None]:
    """For each picture, the file in ``folder`` with its file name (any of ``SUFFIXES``); None for a picture
    that has no file name (it did not come from the Batch tab), or with no folder given. ``what``: the files'
    kind, for messages. The folder is not looked at unless some picture has a file name: pictures sent to the
    API have none, so a caller cannot learn from the answer which folders the server has."""
    stems = [source_name(picture) for picture in pictures] if folder else []
    if not any(stems):
        return [None] * len(pictures)
    directory = Path(folder)
    if not directory.is_dir():
        raise Depth2ImgError(f"The depth folder {directory} does not exist.")
    files = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in SUFFIXES:
            files.setdefault(path.stem, path)
    found = []
    for stem in stems:
        if stem and stem not in files:
            raise Depth2ImgError(f"No {what} named {stem} ({', '.join(SUFFIXES)}) in the depth folder {directory}.")
        found.append(files[stem] if stem else None)
    return found
