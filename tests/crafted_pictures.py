"""Pictures as an attacker builds them by hand: headers that claim more than the file holds, formats that
must never be decoded. Each is a few hundred bytes at most."""

import struct
import zlib

# An EPS as Ghostscript-using tools write its first lines; Pillow would hand it to Ghostscript.
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n%%EndComments\n"
       b"newpath 0 0 moveto 16 16 lineto stroke\nshowpage\n%%EOF\n")
# Formats Pillow (or OpenCV) knows but nothing here may decode, by their real first bytes.
OTHER_FORMATS = {"EPS": EPS, "PSD": b"8BPS\x00\x01" + bytes(40), "ICO": b"\x00\x00\x01\x00\x01\x00" + bytes(40),
                 "SVG": b'<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"/>',
                 "GIF": b"GIF89a\x10\x00\x10\x00\x00\x00\x00;", "PPM": b"P6\n16 16\n255\n" + bytes(16 * 16 * 3)}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int, bit_depth: int = 8, colour_type: int = 0) -> bytes:
    """A valid PNG header that claims ``width`` x ``height`` (grayscale by default) over a tiny IDAT: a bomb
    if decoded (zeros compress to almost nothing), refused if its header is read first."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(bytes(64)))
            + _chunk(b"IEND", b""))


def bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header (BITMAPINFOHEADER) claiming ``width`` x ``height``, with no pixels after it."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def webp_claiming(width: int, height: int) -> bytes:
    """A lossless WebP (VP8L) header claiming ``width`` x ``height`` and no image data: libwebp's animation
    decoder, which Pillow opens every WebP with, reserves 8 bytes a pixel for it as soon as it is opened."""
    bits = (width - 1) | (height - 1) << 14
    chunk = b"\x2f" + struct.pack("<I", bits) + bytes(11)
    body = b"WEBP" + b"VP8L" + struct.pack("<I", len(chunk)) + chunk
    return b"RIFF" + struct.pack("<I", len(body)) + body
