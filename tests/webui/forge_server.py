"""Start a real Forge with this extension in a throwaway data folder (for the opt-in Forge tests).

Forge runs from its own folder (``DEPTH2IMG_FORGE_DIR``, with ``venv``, ``repositories/huggingface_guess``
and the assets); nothing in it is changed. The checkpoint is built with the original WebUI's ldm
(make_forge_depth_checkpoint.py), since Forge has none.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from webui_server import ROOT, prepare_data_dir, serving


def forge_python(forge_dir: str) -> str:
    return os.environ.get("DEPTH2IMG_FORGE_PYTHON") or str(Path(forge_dir) / "venv" / "bin" / "python")


@contextlib.contextmanager
def running_forge(forge_dir: str, data_dir: Path, checkpoint: Path):
    prepare_data_dir(data_dir, checkpoint)
    command = [forge_python(forge_dir), "launch.py", "--skip-prepare-environment", "--skip-python-version-check",
               "--always-cpu", "--api", "--no-download-sd-model", "--data-dir", str(data_dir),
               # gradio 4 serves only allowed paths, and Forge allows only its data folder: with the data
               # elsewhere, its own script.js and this extension (linked in) need naming, or the page has no js
               "--gradio-allowed-path", forge_dir, "--gradio-allowed-path", str(ROOT)]
    with serving(command, forge_dir, data_dir / "forge.log", data_dir, checkpoint) as instance:
        yield instance
