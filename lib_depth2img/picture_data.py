"""Pictures from strangers, checked before anything decodes them.

A string is always the picture's data (base64 as people send it: a data URL, line breaks, the
URL-safe alphabet, no padding), never a path; only a ``Path`` our own code hands over is read from
disk. The kind comes from the bytes' own magic and must be one of ``ALLOWED_FORMATS``, whatever the
name says, and the pixel count from the header must be within a stated limit, so that nothing
else is decoded and no decode asks for more memory than the limit allows.
"""

from __future__ import annotations

import binascii
import io
import os
import re
import struct
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from lib_depth2img.errors import Depth2ImgError

# Pillow's format name -> how its files begin (WebP: "RIFF", four bytes of length, then "WEBP")
ALLOWED_FORMATS = {"PNG": (b"\x89PNG\r\n\x1a\n",), "JPEG": (b"\xff\xd8\xff",), "WEBP": (b"RIFF",),
                   "TIFF": (b"II*\x00", b"MM\x00*"), "BMP": (b"BM",)}
FORMAT_NAMES = "PNG, JPEG, WebP, TIFF or BMP"
# Pictures and depth maps from the API, the page and the depth folder. Measured peaks (tests/benchmark_input_memory.py)
# at this limit: open_picture 0.8 GB (12.5 MiB a megapixel), read_depth_map 1.0 GB (16), the endpoint 1.1 GB (17.5).
MAX_PICTURE_PIXELS = 64_000_000
MAX_OWN_PICTURE_PIXELS = 500_000_000  # the CLI's pictures: a person's own panorama on their own machine
# A picture file sent as data: a 64 MP photo as PNG is about 100 MB. The web server holds the request and its
# parsed text besides, so the bytes sent cost about four times their size before the first pixel is decoded.
MAX_PICTURE_BYTES = 128 * 2**20
_WHITESPACE = b" \t\r\n\v\f"
_STANDARD_ALPHABET = bytes.maketrans(b"-_", b"+/")  # the URL-safe alphabet read as the standard one
_NOT_STANDARD = tuple(bytes([byte]) for byte in b"-_" + _WHITESPACE)
_BASE64_LETTERS = re.compile(rb"[A-Za-z0-9+/]*")
# what a bad decode raises inside Pillow; reported as our error with the picture's name
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, struct.error, zlib.error)


def decoded_base64(text: str, what: str) -> bytes:
    """The bytes ``text`` holds in base64, as people send it; our error, naming ``what``, if it holds none.
    At most ``MAX_PICTURE_BYTES``, refused from the text's length before anything is copied."""
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise Depth2ImgError(f"The {what} is a data URL without base64 ({header[:40]}...): {_SEND_DATA}")
    if len(text) // 4 * 3 > MAX_PICTURE_BYTES:
        raise Depth2ImgError(f"The {what} holds more than {MAX_PICTURE_BYTES // 2**20} MiB of base64 data, the "
                             "limit for a picture: send a smaller or more compressed file.")
    if not text.isascii():
        raise Depth2ImgError(f"The {what} is not valid base64 picture data: it has characters base64 does not use. "
                             + _SEND_DATA)
    data = text.encode("ascii")
    if any(byte in data for byte in _NOT_STANDARD):  # one copy more, only for text that needs it
        data = data.translate(_STANDARD_ALPHABET, _WHITESPACE)
    end = len(data)
    while end and data[end - 1] == ord("=") and len(data) - end < 2:
        end -= 1
    body = memoryview(data)[:end]
    if not end:
        raise Depth2ImgError(f"The {what} is empty: {_SEND_DATA}")
    if end % 4 == 1 or _BASE64_LETTERS.fullmatch(body) is None:
        raise Depth2ImgError(f"The {what} is not valid base64 picture data: it has characters or a length that "
                             f"base64 does not have. {_SEND_DATA}")
    whole = end - end % 4
    decoded = binascii.a2b_base64(body[:whole])
    if whole < end:  # the padding people leave out
        decoded += binascii.a2b_base64(bytes(body[whole:]) + b"=" * (4 - (end - whole)))
    return decoded


_SEND_DATA = ("Send the picture file's bytes in base64 (a data URL too); a file name or path is never read here.")


def _file_of(source, what: str) -> tuple[BinaryIO, str]:
    """A binary file of the picture and a name for messages: base64 text, bytes, or a path our code chose."""
    if isinstance(source, str):
        return io.BytesIO(decoded_base64(source, what)), "(base64)"
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) > MAX_PICTURE_BYTES:
            raise Depth2ImgError(f"The {what} (upload) is larger than {MAX_PICTURE_BYTES // 2**20} MiB, the limit "
                                 "for a picture: send a smaller or more compressed file.")
        return io.BytesIO(bytes(source)), "(upload)"
    if isinstance(source, os.PathLike):
        path = Path(source)
        try:
            return path.open("rb"), str(path)
        except OSError as error:
            raise Depth2ImgError(f"Cannot read the {what} {path}: {error.strerror or error}.") from error
    raise Depth2ImgError(f"The {what} must be a picture, base64 text or bytes, not {type(source).__name__}.")


def picture_format(head: bytes) -> str | None:
    """The allowed format a file's first bytes announce, or None."""
    for name, magics in ALLOWED_FORMATS.items():
        if head.startswith(magics) and (name != "WEBP" or head[8:12] == b"WEBP"):
            return name
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from a WebP's first chunk, which Pillow cannot be asked for before its decoder reserves
    8 bytes a pixel (libwebp's animation decoder, at open); None for a layout not known here."""
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:  # extended: the canvas size, 24 bits each, minus one
        return 1 + int.from_bytes(head[24:27], "little"), 1 + int.from_bytes(head[27:30], "little")
    if chunk == b"VP8L" and len(head) >= 25:  # lossless: 14 bits each, minus one, after the signature byte
        bits = int.from_bytes(head[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + (bits >> 14 & 0x3FFF)
    if chunk == b"VP8 " and len(head) >= 30:  # lossy: after the frame tag and start code, 14 bits each
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    return None


def check_pixel_count(size: tuple[int, int], what: str, limit: int = MAX_PICTURE_PIXELS) -> None:
    """Our error when a picture of ``size`` (width, height) is above ``limit`` pixels."""
    width, height = size
    if width * height > limit:
        raise Depth2ImgError(f"The {what} is {width}x{height} pixels, above the limit of {limit / 1e6:g} megapixels: "
                             "scale it down first.")


@contextmanager
def _pillow_limit(limit: int):
    # Pillow's own guard refuses pictures over twice its limit (~179 MP) and warns above it; ours comes first.
    if Image.MAX_IMAGE_PIXELS is None or limit <= Image.MAX_IMAGE_PIXELS:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextmanager
def _checked(file: BinaryIO, name: str, what: str, limit: int) -> Iterator[Image.Image]:
    head = file.read(32)
    file.seek(0)
    kind = picture_format(head)
    if not head:
        raise Depth2ImgError(f"The {what} {name} is empty.")
    if kind is None:
        if name == "(base64)":
            raise Depth2ImgError(f"The {what} is not valid base64 picture data: the bytes it holds are not a "
                                 f"{FORMAT_NAMES} file. {_SEND_DATA}")
        raise Depth2ImgError(f"The {what} {name} is not a {FORMAT_NAMES} picture (by its first bytes); "
                             "no other format is read.")
    webp_size = _webp_size(head) if kind == "WEBP" else None
    if webp_size is not None:
        check_pixel_count(webp_size, f"{what} {name}", limit)
    try:
        with _pillow_limit(limit), Image.open(file, formats=[kind]) as image:
            check_pixel_count(image.size, f"{what} {name}", limit)
            yield image
    except Image.DecompressionBombError as error:
        raise Depth2ImgError(f"The {what} {name} is above the limit of {limit / 1e6:g} megapixels: "
                             "scale it down first.") from error
    except _DECODE_ERRORS as error:
        raise Depth2ImgError(f"Cannot read the {what} {name} as a {kind} picture: {error}.") from error


@contextmanager
def checked_picture(source, what: str, limit: int = MAX_PICTURE_PIXELS) -> Iterator[Image.Image]:
    """The picture in ``source`` (base64 text, bytes or a ``Path``), opened by Pillow with only its header read,
    once its kind is allowed and its pixel count within ``limit``. Errors while it is decoded inside the block
    are our error too. ``what``: the picture's role, for messages ("picture for depth", "depth map")."""
    file, name = _file_of(source, what)
    with file, _checked(file, name, what, limit) as image:
        yield image


def checked_picture_bytes(source, what: str, limit: int = MAX_PICTURE_PIXELS) -> tuple[bytes, str]:
    """The bytes of the picture in ``source`` and a name for messages, once its header passed ``checked_picture``'s
    checks, for a decoder other than Pillow. Nothing is decoded."""
    file, name = _file_of(source, what)
    with file:
        with _checked(file, name, what, limit):
            pass
        file.seek(0)
        data = file.read(MAX_PICTURE_BYTES + 1)
    if len(data) > MAX_PICTURE_BYTES:
        raise Depth2ImgError(f"The {what} {name} is larger than {MAX_PICTURE_BYTES // 2**20} MiB, the limit for a "
                             "picture: save it smaller or more compressed.")
    return data, name
