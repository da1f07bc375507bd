"""Sends every payload of the hostile corpus through one public entry point, in a process of its own whose
memory is capped, and prints one JSON line per payload: what came out, what got imported, what ran.

``python tests/hostile_probe.py ENTRY[,ENTRY...] CORPUS_FOLDER WORK_FOLDER CAP_MIB``, the corpus made by
``python tests/hostile_corpus.py CORPUS_FOLDER``. Used by test_hostile_input.py; run by hand it shows what each
payload does to each entry.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import io
import json
import resource
import sys
import traceback
from pathlib import Path

TESTS = Path(__file__).parent
sys.path[:0] = [str(TESTS), str(TESTS.parent)]

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hostile_corpus import PATH_STRING, PICTURE, WEIGHTS, _real_zip_with, read_corpus  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tiny_estimators import tiny_rule_state, use_tiny_estimators  # noqa: E402
from webui_helpers import ROOT, WEBUI_IMITATIONS, FakeSDModel, _picture  # noqa: E402

from lib_depth2img import cli  # noqa: E402
from lib_depth2img.checkpoint import inspect_checkpoint  # noqa: E402
from lib_depth2img.errors import Depth2ImgError  # noqa: E402
from lib_depth2img.picture_files import open_picture  # noqa: E402
from lib_depth2img.tensor_index import read_tensor_index  # noqa: E402
from lib_depth2img.user_depth import read_depth_map  # noqa: E402
from lib_depth2img.weights import read_state_dict  # noqa: E402


def _as_sent(payload) -> str:
    """What a caller puts in a picture field: a path string as it is, a file's bytes as base64."""
    return str(payload.path) if payload.kind == PATH_STRING else base64.b64encode(payload.path.read_bytes()).decode()


class _Host:
    """The WebUI imitation with a small depth model loaded, as tests/conftest.py's ``webui`` fixture."""

    def __init__(self, checkpoint: Path):
        sys.path[:0] = [str(path) for path in WEBUI_IMITATIONS]
        from modules import processing, shared

        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        self.script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.script_module)
        from lib_depth2img.estimators import create_estimator
        from lib_depth2img.webui import generation
        from lib_depth2img.weights import load_estimator_weights

        network = create_estimator("dpt_hybrid")
        load_estimator_weights(network, tiny_rule_state("dpt_hybrid"))
        self.processing, self.shared = processing, shared
        shared.sd_model = FakeSDModel(network, filename=str(checkpoint))
        generation.forget_depth(shared.sd_model)

    def run(self, is_img2img: bool, settings: dict) -> None:
        script = self.script_module.Depth2ImgScript()
        script.is_img2img = is_img2img
        kind = self.processing.StableDiffusionProcessingImg2Img if is_img2img else \
            self.processing.StableDiffusionProcessingTxt2Img
        p = kind([_picture()], 192, 128, script_args=[settings]) if is_img2img else \
            kind(192, 128, script_args=[settings])
        self.processing.process_images(p, [script])


def _entries(work: Path):
    """ENTRY name -> (payload kinds it takes, function of a payload that returns what came out), and a
    function that gives the valid file each kind is warmed up with."""
    host, client, weights = None, None, None

    def webui():
        nonlocal host
        host = host or _Host(cli_weights())
        return host

    def endpoint(payload):
        nonlocal client
        if client is None:
            import fastapi
            from fastapi.testclient import TestClient

            webui()
            from lib_depth2img.webui import routes

            app = fastapi.FastAPI()
            routes.register_routes(None, app)
            client = TestClient(app)
        answer = client.post("/depth2img/v1/depth", json={"image": _as_sent(payload)})
        if 400 <= answer.status_code < 500:
            raise Depth2ImgError(f"{answer.status_code}: {answer.json().get('detail')}")
        if answer.status_code != 200:
            raise RuntimeError(f"{answer.status_code}: {answer.text}")
        return "200"

    def cli_weights():
        nonlocal weights
        if weights is None:
            weights = work / "tiny-depth.safetensors"
            state = {f"depth_model.model.{k}": v.contiguous() for k, v in tiny_rule_state("dpt_hybrid").items()}
            save_file(state, str(weights))
        return weights

    def valid_weights() -> list[Path]:
        """The small depth checkpoint, and the same weights saved by torch in its zip and legacy layouts."""
        state = tiny_rule_state("dpt_hybrid")
        torch.save(state, work / "tiny.pt")
        torch.save(state, work / "tiny-legacy.pt", _use_new_zipfile_serialization=False)
        # and as another zip tool writes it back: names without the UTF-8 flag decode by cp437
        (work / "repacked.ckpt").write_bytes(_real_zip_with(None))
        return [cli_weights(), work / "tiny.pt", work / "tiny-legacy.pt", work / "repacked.ckpt"]

    def run_cli(*args) -> str:
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            code = cli.main([str(a) for a in args])
        if code != 0:
            if "error:" not in errors.getvalue():
                raise RuntimeError(f"exit {code} without a message: {errors.getvalue()[-300:]}")
            raise Depth2ImgError(errors.getvalue().strip().splitlines()[-1])
        return "exit 0"

    pictures = (PICTURE, PATH_STRING)
    return {
        "open_picture": (pictures, lambda p: open_picture(_as_sent(p)).size),
        "read_depth_map": (pictures, lambda p: tuple(read_depth_map(_as_sent(p)).shape)),
        "endpoint": (pictures, endpoint),
        "img2img_depth_picture": (pictures, lambda p: webui().run(True, {"depth_picture": _as_sent(p)})),
        "txt2img_depth_map": (pictures, lambda p: webui().run(False, {"depth_source": "upload",
                                                                      "depth_map": _as_sent(p)})),
        "cli_picture": ((PICTURE,), lambda p: run_cli("depth", p.path, "--weights", cli_weights(),
                                                      "-o", work / "maps")),
        "read_tensor_index": ((WEIGHTS,), lambda p: sorted(read_tensor_index(p.path))),
        "read_state_dict": ((WEIGHTS,), lambda p: {k: v.tolist() for k, v in read_state_dict(p.path).items()}),
        "inspect_checkpoint": ((WEIGHTS,), lambda p: inspect_checkpoint(p.path).reason),
        "cli_weights": ((WEIGHTS,), lambda p: run_cli("depth", work / "real.png", "--weights", p.path,
                                                      "-o", work / "maps")),
    }, valid_weights


def _memory_status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024


def _warm_up(run, kinds, real: Path, valid_weights) -> None:
    """An ordinary call of the entry first, so that only what a payload adds to ``sys.modules`` counts."""
    from PIL import Image

    Image.init()  # Pillow imports its own plugin list at the first picture it cannot place: a fixed set
    for path in valid_weights() if WEIGHTS in kinds else [real]:
        with contextlib.suppress(Depth2ImgError):  # the CLI says the repacked file holds no estimator it knows
            run(type("Valid", (), {"path": path, "kind": PICTURE})())


def main(names: list[str], corpus: Path, work: Path, cap_mib: int) -> None:
    """Each entry's payloads under an address-space cap of ``cap_mib`` above what the process holds then."""
    payloads = read_corpus(corpus)
    use_tiny_estimators(pytest.MonkeyPatch())
    entries, valid_weights = _entries(work)
    real = next(p for p in payloads if p.name == "path_to_a_picture").path
    (work / "real.png").write_bytes(real.read_bytes())
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    for name in names:
        kinds, run = entries[name]
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        _warm_up(run, kinds, real, valid_weights)
        modules = set(sys.modules)
        limit = _memory_status("VmSize:") + cap_mib * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
        for payload in (p for p in payloads if p.kind in kinds):
            try:
                outcome, detail = "accepted", run(payload)
            except Depth2ImgError as error:
                outcome, detail = "refused", str(error)
            except BaseException as error:  # anything else is a fault: MemoryError, a library's own exception
                outcome, detail = "fault", "".join(traceback.format_exception_only(error)).strip()[-600:]
            print(json.dumps({"entry": name, "payload": payload.name, "outcome": outcome, "detail": _jsonable(detail),
                              "new_modules": sorted(set(sys.modules) - modules)}), flush=True)


def _jsonable(value):
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return repr(value) if not isinstance(value, np.generic) else value.item()


if __name__ == "__main__":
    main(sys.argv[1].split(","), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
