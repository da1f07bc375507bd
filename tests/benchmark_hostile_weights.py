"""What hostile weights files cost our readers: seconds and peak memory rise, each read in its own process.

``python tests/benchmark_hostile_weights.py [--code CHECKOUT] [--bomb-gib 2.3]``: writes the files of
issue 18 (a .ckpt whose data.pkl is a bzip2 or deflate bomb, a 100 MB .safetensors header), the worst
cases still inside our limits (a 16 MiB header of one-byte tensors, an 8 MiB pickle of empty dicts) and a
pickle whose LONG_BINPUT names a huge memo slot, then
reads each with ``read_tensor_index`` and prints one JSON line per file. ``--code`` measures another
checkout's ``lib_depth2img`` (e.g. the main branch, for the figures before a change).
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))

from peak_memory import peak_rise  # noqa: E402

_SETUP = "from lib_depth2img.errors import Depth2ImgError\nfrom lib_depth2img.tensor_index import read_tensor_index"
_MEASURED = """
try:
    extra = {{"result": f"read, {{len(read_tensor_index({path!r}))}} tensors"}}
except Depth2ImgError as error:
    extra = {{"result": "Depth2ImgError: " + str(error).split(": ", 1)[-1][:110]}}
except BaseException as error:
    extra = {{"result": f"{{type(error).__name__}}: {{str(error)[:110]}}"}}
"""


def _small_checkpoint() -> dict[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"x": torch.arange(4.0)}}, buffer)
    archive = zipfile.ZipFile(buffer)
    return {info.filename: archive.read(info) for info in archive.infolist()}


def _bomb(path: Path, compression: int, gib: float) -> Path:
    """A real checkpoint whose data.pkl is followed by ``gib`` GiB of zeros that no unpickler ever reads."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in _small_checkpoint().items():
            if not name.endswith("data.pkl"):
                archive.writestr(name, content)
                continue
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            with archive.open(info, "w", force_zip64=True) as member:
                member.write(content)
                chunk = bytes(64 * 2**20)
                for _ in range(round(gib * 16)):
                    member.write(chunk)
    return path


def _pickle_flood(path: Path, megabytes: int) -> Path:
    """An 8 MiB data.pkl of EMPTY_DICT opcodes: the most memory a pickle within the limit can ask for."""
    members = _small_checkpoint()
    flood = b"\x80\x02" + b"}" * (megabytes * 2**20 - 3) + b"."
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, flood if name.endswith("data.pkl") else content)
    return path


def _memo_index(path: Path) -> Path:
    """A 10-byte data.pkl whose LONG_BINPUT names memo slot 2**28."""
    members = _small_checkpoint()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, b"\x80\x02Nr" + struct.pack("<I", 2**28) + b"." if name.endswith("data.pkl")
                             else content)
    return path


def _header(path: Path, megabytes: float) -> Path:
    """A .safetensors file of one-byte tensors whose header holds ``megabytes`` MB."""
    entries, size = [], 2
    while size < megabytes * 1e6:
        i = len(entries)
        entries.append(f'"t{i:07d}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{i + 1}]}}')
        size += len(entries[-1]) + 1
    header, count = ("{" + ",".join(entries[:-1]) + "}").encode(), len(entries) - 1
    header += b" " * (-len(header) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + bytes(count))
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--code", type=Path, default=ROOT, help="the checkout whose lib_depth2img is measured")
    parser.add_argument("--bomb-gib", type=float, default=2.3, help="what the bombs inflate to")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {
            "bzip2 bomb .ckpt": lambda p: _bomb(p, zipfile.ZIP_BZIP2, args.bomb_gib),
            "deflate bomb .ckpt": lambda p: _bomb(p, zipfile.ZIP_DEFLATED, args.bomb_gib),
            "100 MB safetensors header": lambda p: _header(p, 100),
            "16 MiB safetensors header (our limit)": lambda p: _header(p, 16 * 2**20 / 1e6 - 0.1),
            "8 MiB pickle of empty dicts (our limit)": lambda p: _pickle_flood(p, 8),
            "10-byte pickle naming memo slot 2**28": _memo_index,
        }
        for label, write in files.items():
            path = write(folder / f"hostile{len(label)}")
            figures = peak_rise(_SETUP, _MEASURED.format(path=str(path)), [str(args.code.resolve())], timeout=1800)
            print(json.dumps({"file": label, "bytes": path.stat().st_size, **figures}), flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
