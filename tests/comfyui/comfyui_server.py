"""Start a real ComfyUI with this node pack in a throwaway base folder (for the opt-in tests and benchmark).

Nothing in ComfyUI's folder is changed: ``--base-directory`` moves models/, custom_nodes/, input/, output/,
temp/ and user/ into ``base_dir``, and the database lives in memory. models/ holds only the checkpoint
(linked in), so the depth weights can only come from the checkpoint file itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
PROBE_NODES = Path(__file__).parent / "probe_nodes" / "depth2img_test_probe"
CHECKPOINT = "512-depth-ema.safetensors"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
       "DO_NOT_TRACK": "1"}


class PromptFailed(RuntimeError):
    """The prompt ran and ComfyUI recorded an execution error (its message is the exception's)."""


class ComfyUI:
    def __init__(self, url: str, base_dir: Path, log: Path):
        self.url, self.base_dir, self.log = url, base_dir, log

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def probe_dir(self) -> Path:
        return self.base_dir / "output" / "depth2img_probe"

    def get(self, route: str, timeout: float = 60, **params):
        import requests

        return requests.get(self.url + route, params=params or None, timeout=timeout)

    def post(self, route: str, payload: dict, timeout: float = 60):
        import requests

        return requests.post(self.url + route, json=payload, timeout=timeout)

    def queue(self, prompt: dict) -> str:
        response = self.post("/prompt", {"prompt": prompt})
        if response.status_code != 200:
            raise AssertionError(f"/prompt answered {response.status_code}: {response.text[:3000]}")
        return response.json()["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 900) -> dict:
        """The prompt's /history entry once it has finished (successfully or not)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").json().get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"].get("status_str") in ("success", "error")):
                return entry
            time.sleep(1)
        raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s:\n{self.log_tail()}")

    def run(self, prompt: dict, timeout: float = 900) -> dict:
        """Queue, wait, and return the outputs; raise PromptFailed with ComfyUI's own error message."""
        entry = self.wait(self.queue(prompt), timeout)
        if entry["status"]["status_str"] != "success":
            raise PromptFailed(execution_error(entry))
        return entry["outputs"]

    def images(self, outputs: dict, node_id: str):
        """The pictures a SaveImage/PreviewImage node of the prompt wrote, fetched over /view."""
        import io

        from PIL import Image

        pictures = []
        for image in outputs[node_id]["images"]:
            response = self.get("/view", filename=image["filename"], subfolder=image["subfolder"],
                                type=image["type"])
            assert response.status_code == 200, response.text[:500]
            pictures.append(Image.open(io.BytesIO(response.content)))
        return pictures

    def free(self) -> None:
        """Unload the models and clear the output cache, so the next identical prompt really runs again."""
        assert self.post("/free", {"unload_models": True, "free_memory": True}).status_code == 200

    def probe(self, name: str) -> dict:
        """What a Depth2ImgTestProbe node named ``name`` recorded (see probe_nodes/)."""
        import torch

        return torch.load(self.probe_dir / f"{name}.pt", weights_only=True)

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:]


def execution_error(entry: dict) -> str:
    for name, data in entry["status"].get("messages", []):
        if name == "execution_error":
            return f"{data.get('node_type')}: {data.get('exception_message')}"
    return f"no execution_error message in {entry['status']}"


def comfyui_python(comfyui_dir: str) -> str:
    return os.environ.get("DEPTH2IMG_COMFYUI_PYTHON") or str(Path(comfyui_dir) / "venv" / "bin" / "python")


def comfyui_checkpoint(comfyui_dir: str) -> Path:
    """The SD2-shaped 512-depth-ema that tests/webui/make_forge_depth_checkpoint.py builds
    (DEPTH2IMG_COMFYUI_CHECKPOINT, or models/checkpoints of the ComfyUI folder)."""
    named = os.environ.get("DEPTH2IMG_COMFYUI_CHECKPOINT")
    return Path(named) if named else Path(comfyui_dir) / "models" / "checkpoints" / CHECKPOINT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # the host sees an ordinary file, at no cost
    except OSError:
        shutil.copy2(source, target)


def prepare_base_dir(base_dir: Path, checkpoint: Path, pack: Path | None) -> None:
    """models/checkpoints with only the checkpoint; custom_nodes with the pack (if any) and the probe node."""
    for folder in ("models/checkpoints", "custom_nodes", "input", "output", "temp", "user"):
        (base_dir / folder).mkdir(parents=True, exist_ok=True)
    target = base_dir / "models" / "checkpoints" / CHECKPOINT
    if not target.exists():
        _link(checkpoint, target)
    for source in filter(None, (pack, PROBE_NODES)):
        link = base_dir / "custom_nodes" / ("sd-webui-depth2img" if source == pack else source.name)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(source, target_is_directory=True)


@contextlib.contextmanager
def running_comfyui(comfyui_dir: str, base_dir: Path, checkpoint: Path, pack: Path | None = ROOT):
    """ComfyUI on CPU on a free loopback port, with ``pack`` (a checkout of this repository; None: without
    our nodes) in its custom_nodes, until the context ends."""
    prepare_base_dir(base_dir, checkpoint, pack)
    if pack is not None:  # as ComfyUI-Manager does on install: the pack's install.py with ComfyUI's python
        subprocess.run([comfyui_python(comfyui_dir), str(pack / "install.py")], cwd=pack, env=ENV, check=True,
                       timeout=900)
    port = _free_port()
    log = base_dir / "comfyui.log"
    command = [comfyui_python(comfyui_dir), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
               "--base-directory", str(base_dir), "--database-url", "sqlite:///:memory:",
               "--disable-auto-launch", "--log-stdout"]
    with log.open("w") as log_file:
        server = subprocess.Popen(command, cwd=comfyui_dir, env=ENV, stdout=log_file, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)
    instance = ComfyUI(f"http://127.0.0.1:{port}", base_dir, log)
    try:
        _wait_until_up(instance, server)
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(instance: ComfyUI, server: subprocess.Popen, timeout: float = 300) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with code {server.returncode}:\n{instance.log_tail()}")
        try:
            if instance.get("/queue", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise RuntimeError(f"ComfyUI did not answer within {timeout} s:\n{instance.log_tail()}")
