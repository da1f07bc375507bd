"""Start a real Forge with this extension in a throwaway data folder (for the opt-in Forge tests).

Forge runs from its own folder (``DEPTH2IMG_FORGE_DIR``, with ``venv``, ``repositories/huggingface_guess``
and the assets); nothing in it is changed. The checkpoint is built with the original WebUI's ldm
(make_forge_depth_checkpoint.py), since Forge has none.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

from webui_server import ENV, ROOT, WebUI, _free_port, _wait_for_checkpoint, _wait_until_up, prepare_data_dir


def forge_python(forge_dir: str) -> str:
    return os.environ.get("DEPTH2IMG_FORGE_PYTHON") or str(Path(forge_dir) / "venv" / "bin" / "python")


@contextlib.contextmanager
def running_forge(forge_dir: str, data_dir: Path, checkpoint: Path):
    prepare_data_dir(data_dir, checkpoint)
    port = _free_port()
    log = data_dir / "forge.log"
    command = [forge_python(forge_dir), "launch.py", "--skip-prepare-environment", "--skip-python-version-check",
               "--always-cpu", "--api", "--no-download-sd-model", "--port", str(port), "--data-dir", str(data_dir),
               # gradio 4 serves only allowed paths, and Forge allows only its data folder: with the data
               # elsewhere, its own script.js and this extension (linked in) need naming, or the page has no js
               "--gradio-allowed-path", forge_dir, "--gradio-allowed-path", str(ROOT)]
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=forge_dir, env=ENV, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    instance = WebUI(f"http://127.0.0.1:{port}", data_dir, log)
    instance.checkpoint = checkpoint.stem
    try:
        _wait_until_up(instance, server)
        response = instance.post("/sdapi/v1/options", {"sd_model_checkpoint": checkpoint.name})
        assert response.status_code == 200, response.text
        _wait_for_checkpoint(instance, lambda loaded: (loaded or "").startswith(checkpoint.stem))
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
