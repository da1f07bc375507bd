"""Start a real WebUI with this extension in a throwaway data folder (for the opt-in tests and benchmark).

Nothing in the WebUI folder is changed: checkpoints, extensions, settings and outputs live in
``data_dir``, whose models/midas stays empty.
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
CHECKPOINT = "tiny-depth"


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


def webui_python(webui_dir: str) -> str:
    return os.environ.get("DEPTH2IMG_WEBUI_PYTHON") or str(Path(webui_dir) / "venv" / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
       "PYTHONUNBUFFERED": "1"}


def build_checkpoint(webui_dir: str, folder: Path, name: str, builder: str = "make_tiny_depth_checkpoint.py",
                     plain: bool = False) -> Path:
    """NAME.safetensors and NAME.yaml in ``folder``, made by one of the builders beside this file (``plain``:
    the tiny builder's plain SD2 model)."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([webui_python(webui_dir), str(Path(__file__).parent / builder), webui_dir, str(folder),
                    "--name", name, *(["--plain"] if plain else [])], check=True, env=ENV, cwd=webui_dir, timeout=900)
    return folder / f"{name}.safetensors"


def prepare_data_dir(data_dir: Path, checkpoint: Path, extensions: tuple[Path, ...] = ()) -> None:
    """models/ with the checkpoint and its yaml linked in (models/midas stays empty), this extension, and the
    ``extensions`` folders (test-only ones) beside it."""
    models = data_dir / "models" / "Stable-diffusion"
    models.mkdir(parents=True)
    (data_dir / "models" / "midas").mkdir()
    for path in (checkpoint, checkpoint.with_suffix(".yaml")):
        try:
            os.link(path, models / path.name)  # the host sees an ordinary file, at no cost
        except OSError:
            shutil.copy2(path, models / path.name)
    (data_dir / "extensions").mkdir()
    (data_dir / "extensions" / "sd-webui-depth2img").symlink_to(ROOT, target_is_directory=True)
    for extension in extensions:
        (data_dir / "extensions" / extension.name).symlink_to(extension, target_is_directory=True)


@contextlib.contextmanager
def running_webui(webui_dir: str, data_dir: Path, checkpoint: Path | None = None,
                  extensions: tuple[Path, ...] = ()):
    """``checkpoint``: one already built (with its yaml beside it); default: the tiny one, built here.
    ``extensions``: more extension folders to install beside this one (test-only probes)."""
    python = webui_python(webui_dir)
    checkpoint = checkpoint or build_checkpoint(webui_dir, data_dir / "checkpoints", CHECKPOINT)
    prepare_data_dir(data_dir, checkpoint, extensions)
    # --skip-prepare-environment skips extensions' install.py: run ours as the WebUI would.
    subprocess.run([python, str(ROOT / "install.py")], check=True, cwd=webui_dir, timeout=600,
                   env={**ENV, "PYTHONPATH": os.pathsep.join(filter(None, [webui_dir, ENV.get("PYTHONPATH")]))})
    command = [python, "launch.py", "--skip-prepare-environment", "--skip-torch-cuda-test", "--use-cpu", "all",
               "--no-half", "--precision", "full", "--api", "--data-dir", str(data_dir), "--skip-version-check",
               "--no-download-sd-model"]
    with serving(command, webui_dir, data_dir / "webui.log", data_dir, checkpoint,
                 loaded_line="Model loaded in") as instance:
        yield instance


@contextlib.contextmanager
def serving(command: list[str], cwd: str, log: Path, data_dir: Path, checkpoint: Path,
            loaded_line: str | None = None):
    """Runs ``command`` (a host's launch.py, less the port) on a free loopback port until the context ends,
    with ``checkpoint`` selected and loaded.

    ``loaded_line``: the log line a host prints when its start-up load has finished. The WebUI sets
    ``sd_model_checkpoint`` at the start of that load, so the option alone does not say it is over, and a
    checkpoint change asked for meanwhile starts a second, overlapping load: that leaves the WebUI's
    ``load_state_dict`` patch in place until it restarts. Without it (Forge loads at the first generation)
    the option is what there is to wait for."""
    port = _free_port()
    with log.open("w") as log_file:
        server = subprocess.Popen([*command, "--port", str(port)], cwd=cwd, env=ENV, stdout=log_file,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    instance = WebUI(f"http://127.0.0.1:{port}", data_dir, log)
    instance.checkpoint = checkpoint.stem
    try:
        _wait_until_up(instance, server)
        if loaded_line is not None:
            _wait_for_log_line(instance, server, loaded_line)
        else:
            _wait_for_checkpoint(instance, lambda loaded: loaded is not None)
        if not _selected(instance.get("/sdapi/v1/options").json().get("sd_model_checkpoint"), checkpoint):
            # the change runs its load within the request, under the queue lock
            response = instance.post("/sdapi/v1/options", {"sd_model_checkpoint": checkpoint.name})
            assert response.status_code == 200, response.text
            _wait_for_checkpoint(instance, lambda loaded: _selected(loaded, checkpoint))
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def _selected(loaded: str | None, checkpoint: Path) -> bool:
    """The option holds a checkpoint's title (``name.safetensors [hash]``) or the name it was set to."""
    return (loaded or "").split(" [")[0] in (checkpoint.name, checkpoint.stem)


def _wait_for_log_line(instance: WebUI, server: subprocess.Popen, line: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while line not in (text := instance.log.read_text(errors="replace")):
        failed = "model failed to load" in text
        if failed or server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the host's first model load did not finish ({line!r} never printed):\n"
                               f"{text[-4000:]}")
        time.sleep(1)


def _wait_until_up(instance: WebUI, server: subprocess.Popen, timeout: float = 600) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the WebUI exited with code {server.returncode}:\n{instance.log.read_text()[-4000:]}")
        # A request before the host has added its API middleware makes that fail ("Cannot add middleware after
        # an application has started"), which a loaded machine shows: ask only once start-up is over.
        if "Startup time:" not in instance.log.read_text(errors="replace"):
            time.sleep(2)
            continue
        try:
            if instance.get("/sdapi/v1/sd-models", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(2)
    raise RuntimeError(f"the WebUI did not answer within {timeout} s:\n{instance.log.read_text()[-4000:]}")


def _wait_for_checkpoint(instance: WebUI, condition, timeout: float = 300) -> None:
    """The first model loads in a background thread after start-up, and a checkpoint change asked
    for meanwhile can fail and be rolled back: wait for each load to finish."""
    deadline = time.monotonic() + timeout
    while not condition(loaded := instance.get("/sdapi/v1/options").json().get("sd_model_checkpoint")):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no checkpoint load finished in {timeout} s; loaded: {loaded!r}:\n"
                               f"{instance.log.read_text()[-4000:]}")
        time.sleep(1)
