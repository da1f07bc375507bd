"""Opt-in: a real ComfyUI (Comfy-Org/ComfyUI) on CPU with this repository as a node pack (see comfyui_server.py).

Set DEPTH2IMG_COMFYUI_DIR to the ComfyUI folder; its ``venv`` (or DEPTH2IMG_COMFYUI_PYTHON) must have ComfyUI's
requirements and ``requests``, and its models/checkpoints the SD2-shaped ``512-depth-ema.safetensors`` that
tests/webui/make_forge_depth_checkpoint.py builds (or DEPTH2IMG_COMFYUI_CHECKPOINT names it).
DEPTH2IMG_COMFYUI_PACK may name another checkout of this repository to install as the node pack.
Without DEPTH2IMG_COMFYUI_DIR these tests are skipped, saying why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from comfyui_server import ROOT, comfyui_checkpoint, running_comfyui  # noqa: E402

COMFYUI_DIR = os.environ.get("DEPTH2IMG_COMFYUI_DIR")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="real-ComfyUI test: set DEPTH2IMG_COMFYUI_DIR to a ComfyUI folder to run it")
    for item in items:
        if "tests/comfyui/" in item.nodeid.replace(os.sep, "/") and not COMFYUI_DIR:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def checkpoint() -> Path:
    path = comfyui_checkpoint(COMFYUI_DIR)
    if not path.is_file():
        pytest.skip(f"{path} is missing: build it with tests/webui/make_forge_depth_checkpoint.py "
                    "(--name 512-depth-ema) or name one in DEPTH2IMG_COMFYUI_CHECKPOINT")
    return path


@pytest.fixture(scope="session")
def pack() -> Path:
    """The checkout installed as the node pack: this repository, or DEPTH2IMG_COMFYUI_PACK."""
    return Path(os.environ.get("DEPTH2IMG_COMFYUI_PACK") or ROOT).resolve()


@pytest.fixture(scope="module")
def comfyui(tmp_path_factory, checkpoint, pack):
    """One ComfyUI per test module (never two at once: each holds the 1.2 GB checkpoint)."""
    pytest.importorskip("requests", reason="the real-ComfyUI tests talk to it over HTTP with requests")
    with running_comfyui(COMFYUI_DIR, tmp_path_factory.mktemp("comfyui-base"), checkpoint, pack) as instance:
        yield instance
    sys.stdout.write(f"\nComfyUI log: {instance.log}\n")
