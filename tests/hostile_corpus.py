"""Files and strings an attacker would send: pictures that claim gigapixels, formats that run programs,
archives that decompress to gigabytes, weights files whose headers or pickles lie, and path strings in
picture fields. ``python tests/hostile_corpus.py FOLDER`` writes them there; the tests build them with
``build_corpus``.

Each payload says what a reader must do with it: ``refused`` (our error, nothing read past the check),
``as_reference`` (a valid file, however odd: the tensors ``torch.load(weights_only=True)`` or the safetensors
library give) or ``inert`` (read or refused, but nothing the file names runs or is imported).
"""

from __future__ import annotations

import functools
import io
import json
import pickle
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PICTURE, WEIGHTS, PATH_STRING = "picture", "weights", "path string"
REFUSED, AS_REFERENCE, INERT = "refused", "as_reference", "inert"
BOMB_BYTES = 128 << 20  # what each archive bomb inflates to: past every limit, quick to build


@dataclass(frozen=True)
class Payload:
    name: str
    kind: str
    path: Path
    expect: str
    why: str


def _png(width: int, height: int, bit_depth: int, colour_type: int, channels: int) -> bytes:
    """A real PNG of zeros, ``width`` x ``height``: rows deflated once and the compressed block repeated
    (a full flush makes identical input give identical output), so a gigapixel file takes no time to make."""
    row = b"\0" * (1 + width * channels * bit_depth // 8)  # filter byte 0, then the samples
    rows_per_block = max(1, (8 << 20) // len(row))
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(row * rows_per_block) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(height, rows_per_block)
    tail = compressor.compress(row * rest) + compressor.flush(zlib.Z_FINISH)
    checksum = zlib.adler32(row * rows_per_block)
    for _ in range(blocks - 1):
        checksum = zlib.adler32(row * rows_per_block, checksum)
    checksum = zlib.adler32(row * rest, checksum)
    stream = b"\x78\xda" + block * blocks + tail + struct.pack(">I", checksum)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def _bmp_claiming(width: int, height: int) -> bytes:
    """A 24-bit BMP header for ``width`` x ``height`` with one row of pixels behind it."""
    row = (width * 3 + 3) // 4 * 4
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, row * height, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + row * height, 0, 0, 54) + info + b"\0" * row


def _saved(picture: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format=format)
    return buffer.getvalue()


def _pictures() -> dict[str, tuple[bytes, str, str]]:
    small = Image.fromarray((np.indices((24, 32)).sum(0) * 5 % 256).astype(np.uint8)).convert("RGB")
    eps = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 24\n"
           b"newpath 0 0 moveto 32 24 lineto stroke showpage\n%%EOF\n")
    return {  # name: (bytes, file name, why)
        "eps": (eps, "drawing.eps", "PostScript: Pillow hands it to Ghostscript"),
        "eps_named_png": (eps, "drawing.png", "PostScript under a picture's name"),
        "ico": (_saved(small, "ICO"), "icon.png", "a format Pillow reads that is not on the list"),
        "pcx": (_saved(small, "PCX"), "old.png", "a format Pillow reads that is not on the list"),
        "png16_22000": (_png(22000, 22000, 16, 0, 1), "grey16.png", "941 KB that decode to 968 MB (float64: 3.9 GB)"),
        "png8_30000": (_png(30000, 30000, 8, 0, 1), "map.png", "a depth map of 900 megapixels"),
        "png16_rgba_9000": (_png(9000, 9000, 16, 6, 4), "rgba16.png", "16-bit RGBA: ~46 bytes a pixel decoded"),
        "bmp_20000": (_bmp_claiming(20000, 20000), "claims.bmp", "a header claiming 400 megapixels"),
        "text": (b"hello, not a picture\n", "note.png", "text under a picture's name"),
    }


def _zip_checkpoint(data_pkl: bytes, method: int, storages: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", data_pkl, compress_type=method)
        archive.writestr("archive/byteorder", "little")
        for key, data in (storages or {}).items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


@functools.cache
def _bytes_pickle(size: int) -> bytes:
    """A pickle of one ``size``-byte bytes object: valid, so an unbounded reader 'succeeds' after inflating it."""
    return b"\x80\x04B" + struct.pack("<I", size) + b"\0" * size + b"."


class _Storage:
    """Stands for a tensor storage in a pickle made by hand: pickled as torch's persistent id."""

    def __init__(self, persistent_id: tuple):
        self.persistent_id = persistent_id


class _Rebuilt:
    """Pickles as a call of ``function`` with ``arguments``, as torch's tensors do."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.persistent_id if isinstance(obj, _Storage) else None


def _pickled(obj, protocol: int = 2) -> bytes:
    buffer = io.BytesIO()
    _Pickler(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


def _tensor(storage: _Storage, offset: int, size: tuple, stride: tuple) -> _Rebuilt:
    return _Rebuilt(torch._utils._rebuild_tensor_v2, storage, offset, size, stride, False, OrderedDict())


def _legacy_file(root, storages: dict[str, np.ndarray]) -> bytes:
    """torch's legacy layout: magic, protocol, system info, the object, the storage keys, then each storage
    as its element count and bytes."""
    system = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    parts = [_pickled(0x1950A86A20F9469CFC6C), _pickled(1001), _pickled(system), _pickled(root),
             _pickled(list(storages))]
    parts += [struct.pack("<q", array.size) + array.tobytes() for array in storages.values()]
    return b"".join(parts)


def _global_pickle(module: str, name: str, call_argument: str | None = None) -> bytes:
    """``{"weight": <module.name>}`` or ``{"weight": module.name(call_argument)}``, as opcodes."""
    reference = f"c{module}\n{name}\n".encode()
    if call_argument is not None:
        reference += b"X" + struct.pack("<I", len(call_argument)) + call_argument.encode() + b"\x85R"
    return b"\x80\x02}X\x06\x00\x00\x00weight" + reference + b"s."


def _real_zip_with(data_pkl: bytes | None, storage_method: int = zipfile.ZIP_STORED) -> bytes:
    """A ``torch.save`` zip whose pickle is replaced (if given); its one storage (four floats 0..3) stays,
    stored with ``storage_method``."""
    buffer = io.BytesIO()
    torch.save({"weight": torch.arange(4.0)}, buffer)
    buffer.seek(0)
    out = io.BytesIO()
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            is_pickle = info.filename.endswith("/data.pkl")
            data = data_pkl if is_pickle and data_pkl is not None else source.read(info)
            target.writestr(info, data, compress_type=storage_method if "/data/" in info.filename else None)
    return out.getvalue()


def _safetensors(header: dict | str | bytes, data: bytes = b"", claimed_length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else (header if isinstance(header, str) else json.dumps(header))
    encoded = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(encoded) if claimed_length is None else claimed_length) + encoded + data


def _weights(folder: Path) -> dict[str, tuple[bytes, str, str, str]]:
    floats = np.arange(8, dtype=np.float32).tobytes()  # two F32 tensors of four, if the header were right
    one = {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}
    victim = folder / "victim-was-run"
    record = _tensor(_Storage(("storage", torch.FloatStorage, "0", "cpu", 4)), 0, (4,), (1,))
    legacy_record = _tensor(_Storage(("storage", torch.FloatStorage, "0", "cpu", 4, None)), 0, (4,), (1,))
    view = _Storage(("storage", torch.FloatStorage, "0", "cpu", 8, ("0v", 2, 4)))  # floats 2..5 of 0..7
    build_on_record = _pickled({"weight": record})[:-2] + b"}X\x04\x00\x00\x00infoK\x05sbs."
    return {  # name: (bytes, file name, expectation, why)
        "zip_bzip2_bomb": (_zip_checkpoint(_bytes_pickle(BOMB_BYTES), zipfile.ZIP_BZIP2), "bzip2.ckpt", REFUSED,
                           "data.pkl inflates to 128 MB by bzip2"),
        "zip_deflate_bomb": (_zip_checkpoint(_bytes_pickle(BOMB_BYTES), zipfile.ZIP_DEFLATED), "deflate.ckpt",
                             REFUSED, "data.pkl inflates to 128 MB by deflate"),
        "zip_lzma_bomb": (_zip_checkpoint(_bytes_pickle(BOMB_BYTES), zipfile.ZIP_LZMA), "lzma.ckpt", REFUSED,
                          "data.pkl inflates to 128 MB by lzma"),
        "st_huge_header": (_safetensors("{" + " " * ((100 << 20) - 2) + "}"), "huge-header.safetensors", REFUSED,
                           "a 100 MB header"),
        "st_nested_header": (_safetensors('{"a":' + "[" * 200_000 + "]" * 200_000 + "}"), "nested.safetensors",
                             REFUSED,
                             "a header nested 200,000 deep"),
        "st_entry_not_object": (_safetensors('{"a": [1, 2]}'), "list.safetensors", REFUSED,
                                "a tensor entry that is a list"),
        "st_negative_offset": (_safetensors({"a": {**one, "data_offsets": [-8, 8]}}, floats), "neg.safetensors",
                               REFUSED, "an offset before the data: into the header"),
        "st_overlapping": (_safetensors({"a": one, "b": {**one, "data_offsets": [8, 24]}}, floats),
                           "overlap.safetensors", REFUSED, "two tensors sharing bytes"),
        "st_out_of_order": (_safetensors({"a": {**one, "data_offsets": [16, 32]}, "b": one}, floats),
                            "order.safetensors", AS_REFERENCE, "offsets in another order than the names: valid"),
        "st_gap": (_safetensors({"a": {**one, "data_offsets": [4, 20]}}, floats), "gap.safetensors", REFUSED,
                   "bytes before the first tensor"),
        "st_past_end": (_safetensors({"a": {**one, "data_offsets": [0, 64]}}, floats), "end.safetensors", REFUSED,
                        "a tensor past the file's end"),
        "st_huge_digits": (_safetensors('{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 1'
                                        + "0" * 4300 + "]}}", floats), "digits.safetensors", REFUSED,
                           "a 4,300-digit offset"),
        "st_dtype_number": (_safetensors({"a": {**one, "dtype": 5}}, floats), "dtype.safetensors", REFUSED,
                            "a dtype that is a number"),
        "st_shape_bytes": (_safetensors({"a": {**one, "shape": [3]}}, floats[:16]), "shape.safetensors", REFUSED,
                           "a shape that needs 12 bytes over 16"),
        "st_negative_shape": (_safetensors({"a": {**one, "shape": [-4]}}, floats[:16]), "negshape.safetensors",
                              REFUSED, "a negative dimension"),
        "st_claims_past_file": (_safetensors({"a": one}, floats[:16], claimed_length=1 << 40),
                                "claims.safetensors", REFUSED, "a header length of 1 TB"),
        "pickle_build_on_record": (_real_zip_with(build_on_record), "build.ckpt", INERT,
                                   "BUILD rewrites a tensor record"),
        "pickle_torch_inductor": (_real_zip_with(_global_pickle("torch", "_inductor")), "inductor.ckpt", INERT,
                                  "names torch._inductor, which getattr would import"),
        "pickle_torch_has_cudnn": (_real_zip_with(_global_pickle("torch", "has_cudnn")), "cudnn.ckpt", INERT,
                                   "names a torch attribute that runs a function when looked up"),
        "pickle_os_system": (_real_zip_with(_global_pickle("os", "system", f"touch {victim}")), "system.ckpt",
                             INERT, "calls os.system"),
        "pickle_builtins_exec": (_real_zip_with(_global_pickle("builtins", "exec",
                                                               f"open({str(victim)!r}, 'w').close()")),
                                 "exec.ckpt", INERT, "calls exec"),
        "pickle_torch_load": (_real_zip_with(_global_pickle("torch", "load", str(folder / "system.ckpt"))),
                              "load.ckpt", INERT, "calls torch.load on another file"),
        "legacy_view_at_offset": (_legacy_file({"weight": _tensor(view, 0, (4,), (1,))},
                                               {"0": np.arange(8, dtype=np.float32)}),
                                  "view.pt", AS_REFERENCE, "a legacy storage view two floats in: [2, 3, 4, 5]"),
        "legacy_storage_past_end": (_legacy_file({"weight": legacy_record}, {"0": np.arange(4, dtype=np.float32)})[:-8],
                                    "short.pt", REFUSED, "a storage cut short"),
        "zip_record_past_storage": (_real_zip_with(_pickled({"weight": _tensor(
            _Storage(("storage", torch.FloatStorage, "0", "cpu", 4)), 2, (4,), (1,))})), "past.ckpt", REFUSED,
            "a tensor reaching past its storage"),
        "zip_storage_missing": (_zip_checkpoint(_pickled({"weight": record}), zipfile.ZIP_STORED), "nostorage.ckpt",
                                REFUSED, "a tensor whose storage is not in the archive"),
        "zip_storage_deflated": (_real_zip_with(None, zipfile.ZIP_DEFLATED), "deflated.ckpt", REFUSED,
                                 "a storage compressed, which torch never writes: its bytes are not where they lie"),
    }


def build_corpus(folder: str | Path) -> list[Payload]:
    """Writes every payload into ``folder`` (which also holds ``real.png``, a valid picture whose path the
    path-string payloads name, and ``corpus.json``, the list ``read_corpus`` gives back) and returns them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payloads = []
    for name, (data, file_name, why) in _pictures().items():
        (folder / file_name).write_bytes(data)
        payloads.append(Payload(name, PICTURE, folder / file_name, REFUSED, why))
    for name, (data, file_name, expect, why) in _weights(folder).items():
        (folder / file_name).write_bytes(data)
        payloads.append(Payload(name, WEIGHTS, folder / file_name, expect, why))
    real = folder / "real.png"
    Image.fromarray((np.indices((64, 96)).sum(0) % 256).astype(np.uint8)).convert("RGB").save(real)
    for name, target, why in (("path_to_a_picture", real, "a server-side picture named by its path"),
                              ("path_to_etc_passwd", Path("/etc/passwd"), "a system file named by its path"),
                              ("path_missing", folder / "missing.png", "a path that exists nowhere")):
        payloads.append(Payload(name, PATH_STRING, target, REFUSED, why))
    listing = [{**vars(payload), "path": str(payload.path)} for payload in payloads]
    (folder / "corpus.json").write_text(json.dumps(listing, indent=1))
    return payloads


def read_corpus(folder: str | Path) -> list[Payload]:
    """The payloads ``build_corpus`` wrote into ``folder``."""
    listing = json.loads((Path(folder) / "corpus.json").read_text())
    return [Payload(**{**entry, "path": Path(entry["path"])}) for entry in listing]


if __name__ == "__main__":
    for payload in build_corpus(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus"):
        print(f"{payload.kind:12} {payload.expect:9} {payload.path}  ({payload.why})")
