"""Peak memory per input megapixel of what reads pictures from strangers. JSON out, one line per case.

``python tests/benchmark_input_memory.py [--megapixels 16 64]``: each case runs in a fresh process (see
``peak_memory.py``): the picture is made and base64-encoded first, as a request would bring it, then only
the read is measured: ``open_picture`` (the picture for depth), ``read_depth_map`` (a depth map), and the
endpoint (``POST /depth2img/v1/depth`` through FastAPI's TestClient with the small test network, the
request body already serialised). ``MAX_PICTURE_PIXELS`` (64 MP) is the largest any of them accepts, and
``MAX_PICTURE_BYTES`` (128 MiB) the largest file: a 64 MP 16-bit grayscale PNG of random pixels (122 MiB)
is the worst case in bytes and pixels together; a random 16-bit RGBA one (512 MB) is refused from its length.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

from peak_memory import peak_rise  # noqa: E402

_MAKE = """
import base64, io, sys
import numpy as np
sys.path[:0] = [{tests!r}, {root!r}]

def _pixels(height, width, channels, dtype, noise):
    rows = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    columns = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    plane = rows * 0.6 + columns * 0.4  # a smooth scene, as photos and depth maps mostly are
    top = 65535 if dtype == "uint16" else 255
    if noise:  # every pixel random: incompressible, the most bytes a file of this size can take
        plane = np.random.default_rng(0).integers(0, top + 1, (height, width), dtype=dtype)
    else:
        plane = (plane * top).astype(dtype)
    return plane if channels == 1 else np.repeat(plane[..., None], channels, axis=2)

def _file(pixels, kind):
    import cv2
    ok, data = cv2.imencode(kind, pixels, [cv2.IMWRITE_PNG_COMPRESSION, 1] if kind == ".png" else [])
    assert ok
    return data.tobytes()

side = int(({megapixels} * 1e6) ** 0.5)
data = _file(_pixels(side, side, {channels}, {dtype!r}, {noise}), {kind!r})
TEXT = base64.b64encode(data).decode()
extra = {{"file_mib": round(len(data) / 2**20, 1), "pixels": side * side}}
del data
{imports}
"""
_ENDPOINT_SETUP = """
import importlib.util, pytest, tempfile, torch
from pathlib import Path
sys.path[:0] = {imitations!r}
from tiny_estimators import create_tiny_estimator, tiny_rule_state, use_tiny_estimators
from webui_helpers import FakeSDModel
from conftest import _save_depth_checkpoint
from lib_depth2img.weights import load_estimator_weights
from modules import shared
spec = importlib.util.spec_from_file_location("depth2img_script", {script!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
patch = pytest.MonkeyPatch()
use_tiny_estimators(patch)
state = tiny_rule_state("dpt_hybrid")
network = create_tiny_estimator("dpt_hybrid")
load_estimator_weights(network, state)
checkpoint = _save_depth_checkpoint(Path(tempfile.mkdtemp()) / "512-depth-ema.safetensors", state)
from lib_depth2img.webui import generation, routes
shared.sd_model = FakeSDModel(network, filename=str(checkpoint))
generation.forget_depth(shared.sd_model)
import fastapi, json
from fastapi.testclient import TestClient
app = fastapi.FastAPI()
routes.register_routes(None, app)
client = TestClient(app)
BODY = json.dumps({{"image": TEXT, "bits": 16}}).encode()
del TEXT
client.post("/depth2img/v1/depth", json={{"image": base64.b64encode(_file(_pixels(64, 64, 3, "uint8", False),
            ".png")).decode()}})  # the first call builds what every call shares
"""
_ENDPOINT = """
answer = client.post("/depth2img/v1/depth", content=BODY, headers={"content-type": "application/json"})
assert answer.status_code == 200, answer.text[:300]
extra["map"] = f'{answer.json()["width"]}x{answer.json()["height"]}, 16-bit'
del answer
"""

CASES = {  # name -> (reader, channels, dtype, file kind, random pixels)
    "open_picture: 8-bit RGB PNG": ("open_picture", 3, "uint8", ".png", False),
    "open_picture: 8-bit RGB JPEG": ("open_picture", 3, "uint8", ".jpg", False),
    "open_picture: 16-bit gray PNG": ("open_picture", 1, "uint16", ".png", False),
    "open_picture: 16-bit gray PNG, random pixels": ("open_picture", 1, "uint16", ".png", True),
    "open_picture: 16-bit RGBA PNG": ("open_picture", 4, "uint16", ".png", False),
    "read_depth_map: 8-bit gray PNG": ("read_depth_map", 1, "uint8", ".png", False),
    "read_depth_map: 16-bit gray PNG, random pixels": ("read_depth_map", 1, "uint16", ".png", True),
    "read_depth_map: 16-bit RGBA PNG": ("read_depth_map", 4, "uint16", ".png", False),
    "endpoint: 8-bit RGB PNG, 16-bit map at its size": ("endpoint", 3, "uint8", ".png", False),
    "endpoint: 16-bit gray PNG, random pixels, 16-bit map at its size": ("endpoint", 1, "uint16", ".png", True),
    "endpoint: 16-bit RGBA PNG, 16-bit map at its size": ("endpoint", 4, "uint16", ".png", False),
}

IMITATIONS = ("webui_imitation", "ldm_imitation")  # the original WebUI, with ldm


def measure(name: str, megapixels: float) -> dict:
    reader, channels, dtype, kind, noise = CASES[name]
    imports = {"open_picture": "from lib_depth2img.picture_files import open_picture",
               "read_depth_map": "from lib_depth2img.user_depth import read_depth_map",
               "endpoint": _ENDPOINT_SETUP.format(imitations=[str(TESTS / name) for name in IMITATIONS],
                                                  script=str(TESTS.parent / "scripts" / "depth2img.py"))}[reader]
    setup = _MAKE.format(tests=str(TESTS), root=str(TESTS.parent), megapixels=megapixels, channels=channels,
                         dtype=dtype, noise=noise, kind=kind, imports=imports)
    measured = _ENDPOINT if reader == "endpoint" else f"result = {reader}(TEXT)\ndel result"
    result = peak_rise(setup, measured, [str(TESTS), str(TESTS.parent)], timeout=1800)
    if "peak_rise_mib" in result:
        result["mib_per_megapixel"] = round(result["peak_rise_mib"] / (result["pixels"] / 1e6), 2)
    return {"case": name, "megapixels": megapixels, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megapixels", type=float, nargs="+", default=[16, 64])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE")
    args = parser.parse_args()
    for megapixels in args.megapixels:
        for name in args.cases:
            print(json.dumps(measure(name, megapixels)), flush=True)


if __name__ == "__main__":
    main()
