"""Opt-in: a real WebUI with this extension installed, on CPU, in a throwaway data folder.

Set DEPTH2IMG_WEBUI_DIR to a WebUI (v1.10.1) folder whose ``venv`` (or DEPTH2IMG_WEBUI_PYTHON)
has its requirements installed. Nothing in that folder is changed: models, extensions, settings
and outputs all live in a temporary --data-dir, whose models/midas stays empty.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent.parent
WEBUI_DIR = os.environ.get("DEPTH2IMG_WEBUI_DIR")
CHECKPOINT = "tiny-depth"


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="real-WebUI test: set DEPTH2IMG_WEBUI_DIR to a WebUI v1.10.1 folder to run it")
    for item in items:
        if "tests/webui/" in item.nodeid.replace(os.sep, "/") and not WEBUI_DIR:
            item.add_marker(skip)


def _python() -> str:
    return os.environ.get("DEPTH2IMG_WEBUI_PYTHON") or str(Path(WEBUI_DIR) / "venv" / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebUI:
    checkpoint = CHECKPOINT

    def __init__(self, url: str, data_dir: Path, log: Path):
        self.url, self.data_dir, self.log = url, data_dir, log

    def post(self, route: str, payload: dict, timeout: float = 600):
        import requests

        return requests.post(self.url + route, json=payload, timeout=timeout)

    def get(self, route: str, timeout: float = 60):
        import requests

        return requests.get(self.url + route, timeout=timeout)

    def output_files(self) -> list[Path]:
        return sorted(p for p in (self.data_dir / "outputs").rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def webui(tmp_path_factory) -> WebUI:
    pytest.importorskip("requests", reason="the real-WebUI tests talk to it over HTTP with requests")
    data_dir = tmp_path_factory.mktemp("webui-data")
    models = data_dir / "models" / "Stable-diffusion"
    (data_dir / "models" / "midas").mkdir(parents=True)
    (data_dir / "extensions").mkdir()
    (data_dir / "extensions" / "sd-webui-depth2img").symlink_to(ROOT, target_is_directory=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
           "PYTHONUNBUFFERED": "1"}
    subprocess.run([_python(), str(Path(__file__).parent / "make_tiny_depth_checkpoint.py"), WEBUI_DIR,
                    str(models), "--name", CHECKPOINT], check=True, env=env, cwd=WEBUI_DIR, timeout=900)
    # --skip-prepare-environment skips extensions' install.py; run ours as the WebUI would.
    subprocess.run([_python(), str(ROOT / "install.py")], check=True, cwd=WEBUI_DIR, timeout=600,
                   env={**env, "PYTHONPATH": os.pathsep.join(filter(None, [WEBUI_DIR, env.get("PYTHONPATH")]))})
    port = _free_port()
    log = data_dir / "webui.log"
    command = [_python(), "launch.py", "--skip-prepare-environment", "--skip-torch-cuda-test", "--use-cpu", "all",
               "--no-half", "--precision", "full", "--api", "--port", str(port), "--data-dir", str(data_dir),
               "--skip-version-check", "--no-download-sd-model"]
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=WEBUI_DIR, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    instance = WebUI(f"http://127.0.0.1:{port}", data_dir, log)
    try:
        _wait_until_up(instance, server)
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        sys.stdout.write(f"\nWebUI log: {log}\n")


def _wait_until_up(instance: WebUI, server: subprocess.Popen, timeout: float = 600) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the WebUI exited with code {server.returncode}:\n{instance.log.read_text()[-4000:]}")
        try:
            if instance.get("/sdapi/v1/sd-models", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise RuntimeError(f"the WebUI did not answer within {timeout} s:\n{instance.log.read_text()[-4000:]}")
