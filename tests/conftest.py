import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for tests/reference.py
sys.path.insert(0, str(Path(__file__).parent.parent))  # the project, without installing it

from reference import reference_layout, rule_weights  # noqa: E402
from tiny_estimators import create_tiny_estimator, tiny_rule_state, use_tiny_estimators  # noqa: E402
from webui_helpers import ROOT, WEBUI_IMITATIONS, FakeSDModel, ForwardCounter  # noqa: E402

from lib_depth2img.estimators import create_estimator  # noqa: E402
from lib_depth2img.weights import load_estimator_weights  # noqa: E402

pytest_plugins = ["suite_health", "comfyui_helpers"]  # each file's peak memory in the summary; a crash
# contained. The ComfyUI imitation's fixtures.
from suite_health import SHARED_FOLDER  # noqa: E402

# pytest-xdist runs test files side by side (pyproject's addopts): each worker takes its share of the cores,
# so torch's threads do not outnumber them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _WORKERS))


def _hybrid_rule_state() -> dict[str, torch.Tensor]:
    return rule_weights(reference_layout("midas-dpt_hybrid.json"))


# Full-size networks are module-scoped: a session-scoped one (0.5 GB each) stayed in its xdist worker for every
# later test file, which then passed the 3 GB rule on top of its own needs.
@pytest.fixture(scope="module")
def hybrid_rule_state() -> dict[str, torch.Tensor]:
    """DPT-Hybrid weights set by the parity fixture's rule, in the release file's layout."""
    return _hybrid_rule_state()


@pytest.fixture(scope="module")
def hybrid_estimator(hybrid_rule_state) -> torch.nn.Module:
    estimator = create_estimator("dpt_hybrid")
    load_estimator_weights(estimator, hybrid_rule_state)
    return estimator


@pytest.fixture(scope="session")
def tiny_hybrid_state() -> dict[str, torch.Tensor]:
    """A small DPT-Hybrid's weights (tests/tiny_estimators.py), set by the parity fixture's rule."""
    return tiny_rule_state("dpt_hybrid")


@pytest.fixture(scope="session")
def tiny_hybrid(tiny_hybrid_state) -> torch.nn.Module:
    """For tests where the network is not what is tested: DPT-Hybrid's classes, keys and input rule, small."""
    estimator = create_tiny_estimator("dpt_hybrid")
    load_estimator_weights(estimator, tiny_hybrid_state)
    return estimator


@pytest.fixture()
def tiny_estimators(monkeypatch) -> None:
    """Every estimator built by name (from a checkpoint file, a release file) is the small one."""
    use_tiny_estimators(monkeypatch)


def _save_depth_checkpoint(path: Path, depth_state: dict[str, torch.Tensor]) -> Path:
    """A depth checkpoint as the hosts load it from disk: the depth slice and a 5-channel UNet input."""
    from safetensors.torch import save_file

    state = {f"depth_model.model.{k}": v.contiguous() for k, v in depth_state.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 5, 3, 3)
    save_file(state, str(path))
    return path


def _shared_file(tmp_path_factory, name: str, write) -> Path:
    """A full-size file written once per run, not once per worker: in the run's own folder, which xdist's
    workers share (each has its folder below it). ``write(path)`` writes it whole in this worker's folder and
    it is renamed into place, so no worker reads half of it; the run's end removes it (tests/suite_health.py)."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / SHARED_FOLDER / name
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        written = tmp_path_factory.mktemp("unshared") / name
        write(written)
        os.replace(written, path)
    return path


@pytest.fixture(scope="session")
def midas_pt(tmp_path_factory):
    """A MiDaS release-style file: the bare DPT-Hybrid state dict, saved by torch (0.5 GB, gone after the run)."""
    return _shared_file(tmp_path_factory, "dpt_hybrid-midas-501f0c75.pt",
                        lambda p: torch.save(_hybrid_rule_state(), p))


@pytest.fixture(scope="session")
def depth_checkpoint_file(tmp_path_factory):
    """A full-size depth checkpoint (0.5 GB, gone after the run), for the end-to-end tests of the hosts."""
    return _shared_file(tmp_path_factory, "512-depth-ema.safetensors",
                        lambda p: _save_depth_checkpoint(p, _hybrid_rule_state()))


@pytest.fixture(scope="session")
def tiny_depth_checkpoint_file(tmp_path_factory, tiny_hybrid_state) -> Path:
    """A depth checkpoint whose depth slice is the small DPT-Hybrid's (use with ``tiny_estimators``)."""
    return _save_depth_checkpoint(tmp_path_factory.mktemp("tiny-checkpoint") / "512-depth-ema.safetensors",
                                  tiny_hybrid_state)


@pytest.fixture(scope="module")
def webui():
    """Imports the imitation as `modules`/`ldm` and loads scripts/depth2img.py as the WebUI would."""
    sys.path[:0] = [str(path) for path in WEBUI_IMITATIONS]
    try:
        from modules import processing, script_callbacks, shared

        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script_module)
        yield type("WebUI", (), {"processing": processing, "shared": shared, "callbacks": script_callbacks,
                                 "script_module": script_module})
    finally:
        for path in WEBUI_IMITATIONS:
            sys.path.remove(str(path))
        for name in [n for n in sys.modules if n.split(".")[0] in ("modules", "ldm") or n == "depth2img_script"]:
            del sys.modules[name]
        for name in [n for n in sys.modules if n.startswith("lib_depth2img.webui")]:
            del sys.modules[name]


@pytest.fixture(scope="session")
def depth_checkpoint(tiny_depth_checkpoint_file) -> Path:
    """The file the model was loaded from: the WebUI always has one."""
    return tiny_depth_checkpoint_file


def _loaded_depth_model(webui, network, checkpoint):
    from lib_depth2img.webui import generation

    model = FakeSDModel(network, filename=str(checkpoint))
    webui.shared.sd_model = model
    generation.forget_depth(model)  # as on_model_loaded does: each test starts with a fresh checkpoint
    counter = ForwardCounter(network)
    yield model, counter
    counter.handle.remove()
    webui.shared.sd_model = None


@pytest.fixture()
def depth_model(webui, tiny_estimators, tiny_hybrid, depth_checkpoint):
    """The WebUI's loaded depth model, holding the small DPT-Hybrid filled from ``depth_checkpoint``."""
    yield from _loaded_depth_model(webui, tiny_hybrid, depth_checkpoint)


@pytest.fixture()
def full_size_depth_model(webui, hybrid_estimator, depth_checkpoint_file):
    """As ``depth_model``, with the full-size DPT-Hybrid: for one end-to-end test."""
    yield from _loaded_depth_model(webui, hybrid_estimator, depth_checkpoint_file)
