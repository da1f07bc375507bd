"""What a weights file really is, told from its first bytes rather than its name.

People bring files saved by every tool there is, renamed, half-downloaded, or replaced by a
web page or a Git LFS pointer. The message must say which of those it is, so the advice fits:
"get it again" only for a file that is cut short or is not the file at all.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from lib_depth2img.errors import Depth2ImgError

SAFETENSORS, TORCH_ZIP, TORCH_LEGACY = "safetensors", "torch-zip", "torch-legacy"
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"  # pickled 0x1950a86a20f9469cfc6c
WEIGHTS_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
_OTHER_FORMATS = (  # (magic at offset 0, what the file is)
    (b"GGUF", "a GGUF file (a quantised model for llama.cpp-style loaders)"),
    (b"\x89HDF", "an HDF5 file (Keras or TensorFlow weights)"),
    (b"\x93NUMPY", "a NumPy array file"),
    (b"\x89PNG", "a PNG picture"),
    (b"\xff\xd8\xff", "a JPEG picture"),
    (b"7z\xbc\xaf", "a 7-Zip archive; unpack it first"),
    (b"Rar!", "a RAR archive; unpack it first"),
    (b"\x1f\x8b", "a gzip archive; unpack it first"),
)
_HEAD = 1024


def identify_weights_file(path: str | Path) -> str:
    """``SAFETENSORS``, ``TORCH_ZIP`` or ``TORCH_LEGACY``; for anything else a ``Depth2ImgError`` saying what it is."""
    path = Path(path)
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.suffix.lower() in WEIGHTS_SUFFIXES)[:3]
        hint = f" It holds {', '.join(inside)}: name one of those." if inside else ""
        raise Depth2ImgError(f"{path} is a folder, not a weights file.{hint}")
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(_HEAD)
    except FileNotFoundError as error:
        raise Depth2ImgError(f"{path} does not exist.") from error
    except OSError as error:
        raise Depth2ImgError(f"Cannot read {path}: {error.strerror or error}.") from error
    if size == 0:
        raise Depth2ImgError(f"{path} is empty (0 bytes): the download or copy did not finish. Get the file again.")
    if head[8:].lstrip(b" \t\r\n")[:1] == b"{":  # JSON may begin with whitespace, and the library allows it
        header_len = struct.unpack("<Q", head[:8])[0]
        if header_len > size - 8:
            raise Depth2ImgError(f"{path} is a .safetensors file cut short: its header alone needs {header_len + 8} "
                                 f"bytes but the file has {size}. Get the file again.")
        return SAFETENSORS
    if head.startswith(b"PK\x03\x04"):
        return TORCH_ZIP  # whether it is a complete PyTorch archive is told when it is opened
    if head.startswith(TORCH_LEGACY_MAGIC):
        return TORCH_LEGACY
    raise Depth2ImgError(f"{path} is {_describe_other(head, size)}, not a weights file this extension reads "
                         "(.safetensors, or a PyTorch .ckpt/.pt/.pth).")


def _describe_other(head: bytes, size: int) -> str:
    if head.startswith(b"version https://git-lfs"):
        match = re.search(rb"size (\d+)", head)
        real = f" of {int(match.group(1)):,} bytes" if match else ""
        return (f"a Git LFS pointer: the real file{real} was never downloaded (run `git lfs pull` in that "
                "repository, or download the file itself)")
    if len(head) > 257 + 5 and head[257:262] == b"ustar":
        return "a tar archive (PyTorch before 1.0 saved like this; load it with torch and save it again)"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle that is not a PyTorch checkpoint"
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            return what
    if b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None:
            if re.search(r"<(!doctype html|html|head|body)\b", text, re.IGNORECASE):
                return ("a web page: a download saved the site's page instead of the file (often a login or "
                        "'not found' page). Download the file itself again")
            first_line = text.strip().splitlines()[0][:60] if text.strip() else ""
            return f"a text file ({size:,} bytes, starting {first_line!r})"
    return f"of an unknown format ({size:,} bytes)"
