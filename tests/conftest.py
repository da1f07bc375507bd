import importlib.util
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # for tests/reference.py
sys.path.insert(0, str(Path(__file__).parent.parent))  # the project, without installing it

from reference import reference_layout, rule_weights  # noqa: E402
from webui_helpers import IMITATION, ROOT, FakeSDModel, ForwardCounter  # noqa: E402

from lib_depth2img.estimators import create_estimator  # noqa: E402
from lib_depth2img.weights import load_estimator_weights  # noqa: E402


@pytest.fixture(scope="session")
def hybrid_rule_state() -> dict[str, torch.Tensor]:
    """DPT-Hybrid weights set by the parity fixture's rule, in the release file's layout."""
    return rule_weights(reference_layout("midas-dpt_hybrid.json"))


@pytest.fixture(scope="session")
def hybrid_estimator(hybrid_rule_state) -> torch.nn.Module:
    estimator = create_estimator("dpt_hybrid")
    load_estimator_weights(estimator, hybrid_rule_state)
    return estimator


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("weights")


@pytest.fixture(scope="session")
def midas_pt(weights_dir, hybrid_rule_state) -> Path:
    """A MiDaS release-style file: the bare DPT-Hybrid state dict, saved by torch."""
    path = weights_dir / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(hybrid_rule_state, path)
    return path


@pytest.fixture(scope="session")
def depth_checkpoint_file(tmp_path_factory, hybrid_rule_state) -> Path:
    """A depth checkpoint as the hosts load it from disk: the DPT-Hybrid slice and a 5-channel UNet input."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("checkpoint") / "512-depth-ema.safetensors"
    state = {f"depth_model.model.{k}": v.contiguous() for k, v in hybrid_rule_state.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 5, 3, 3)
    save_file(state, str(path))
    return path


@pytest.fixture(scope="module")
def webui():
    """Imports the imitation as `modules`/`ldm` and loads scripts/depth2img.py as the WebUI would."""
    sys.path.insert(0, str(IMITATION))
    try:
        from modules import processing, script_callbacks, shared

        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script_module)
        yield type("WebUI", (), {"processing": processing, "shared": shared, "callbacks": script_callbacks,
                                 "script_module": script_module})
    finally:
        sys.path.remove(str(IMITATION))
        for name in [n for n in sys.modules if n.split(".")[0] in ("modules", "ldm") or n == "depth2img_script"]:
            del sys.modules[name]
        for name in [n for n in sys.modules if n.startswith("lib_depth2img.webui")]:
            del sys.modules[name]


@pytest.fixture(scope="session")
def depth_checkpoint(depth_checkpoint_file) -> Path:
    """The file the model was loaded from: the WebUI always has one."""
    return depth_checkpoint_file


@pytest.fixture()
def depth_model(webui, hybrid_estimator, depth_checkpoint):
    from lib_depth2img.webui import generation

    model = FakeSDModel(hybrid_estimator, filename=str(depth_checkpoint))
    webui.shared.sd_model = model
    generation.forget_depth(model)  # as on_model_loaded does: each test starts with a fresh checkpoint
    counter = ForwardCounter(hybrid_estimator)
    yield model, counter
    counter.handle.remove()
    webui.shared.sd_model = None
