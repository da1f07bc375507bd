"""Weights files as real tools write them: ``torch.save(module.state_dict())`` of every estimator, a
Lightning ``Trainer.save_checkpoint``, MiDaS's own wrapper, zip and legacy layouts, float16 storages,
safetensors with metadata. Each is indexed, recognised and read; torch's own loader is the reference."""

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import depth_by_the_rule, rule_weights, synthetic_image
from safetensors.torch import save_file
from suite_health import give_back_freed_memory

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, UNET_INPUT_KEY, inspect_checkpoint
from lib_depth2img.estimators import ESTIMATORS, create_estimator, detect_estimator
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.torch_pickle import unwrap_state_dict
from lib_depth2img.weights import read_state_dict

ROOT = Path(__file__).parent.parent
HALF = ("depth_anything_v2_vitb", "depth_anything_v2_vitl", "dpt_large")  # float16 files: HalfStorage, half the disk


def _module(name: str) -> torch.nn.Module:
    """Weights whose depth map is not flat, which would prove nothing: DPT-Hybrid gets the parity fixtures'
    rule-set weights (its fresh init ends below its final ReLU); the others torch's init with every float
    tensor nudged (MiDaS v2.1 small's zero biases and unit BatchNorm statistics alone also give a flat map)."""
    torch.manual_seed(len(name))
    module = create_estimator(name)
    if name == "dpt_hybrid":
        module.load_state_dict(rule_weights({k: tuple(v.shape) for k, v in module.state_dict().items()}))
        return module
    with torch.no_grad():
        for key, tensor in module.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(0.05 * torch.randn_like(tensor))
                if key.endswith("running_var"):
                    tensor.abs_()
    return module.half().float() if name in HALF else module  # the weights as the file will hold them


def _lightning_checkpoint(path: Path, estimator: torch.nn.Module) -> None:
    """A real ``Trainer.save_checkpoint``: callbacks, loops, AdamW state, a class in the hyper-parameters."""
    pl = pytest.importorskip("pytorch_lightning", reason="the Lightning checkpoint is written by Lightning itself")

    class DepthModel(pl.LightningModule):
        def __init__(self, optimizer_class=torch.optim.AdamW):
            super().__init__()
            self.save_hyperparameters()
            self.model = torch.nn.Module()
            self.model.diffusion_model = torch.nn.Module()
            self.model.diffusion_model.input_blocks = torch.nn.ModuleList([torch.nn.ModuleList(
                [torch.nn.Conv2d(5, 8, 3)])])
            self.depth_model = torch.nn.Module()
            self.depth_model.model = estimator

        def training_step(self, batch, index):  # trains the UNet conv only: the estimator needs no backward
            return self.model.diffusion_model.input_blocks[0][0](batch[0]).mean()

        def configure_optimizers(self):
            return self.hparams.optimizer_class(self.model.parameters(), lr=1e-3)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(2, 5, 8, 8)), batch_size=1)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=str(path.parent / "lightning"), accelerator="cpu")
    trainer.fit(DepthModel(), data)
    trainer.save_checkpoint(str(path))


def write_corpus(folder: Path) -> None:
    """Every file of the corpus in ``folder``, with ``files.json`` (label -> path, estimator, key prefix) and
    ``maps.npz`` (estimator -> the saved module's expected map). One network is alive at a time: all nine kept
    at once took a process to 6.8 GB."""
    files, maps = {}, {}
    for name, spec in ESTIMATORS.items():
        module = _module(name)
        state = (module.half() if name in HALF else module).state_dict()  # in place: a copy of ViT-L is 1.3 GB
        assert hasattr(state, "_metadata")  # as state_dict() returns it: an OrderedDict with _metadata
        torch.save(state, folder / spec.release_files[0])
        del state
        module.float()  # the values _module gave it, which float16 holds exactly
        files[name] = (folder / spec.release_files[0], name, "")
        maps[name] = _expected_map(module, name)
        if name in _MORE_FILES:
            _MORE_FILES[name](folder, module, files)
        del module
        give_back_freed_memory()  # else glibc keeps the freed networks' blocks, and the ViT-L comes on top
    (folder / "files.json").write_text(json.dumps({label: [str(p), *rest] for label, (p, *rest) in files.items()}))
    np.savez(folder / "maps.npz", **maps)


@pytest.fixture(scope="module")
def corpus_and_maps(tmp_path_factory):
    """file label -> (path, the estimator it holds, the key prefix it is under), and estimator name -> the
    saved module's expected map. About 4 GB on disk, removed afterwards. Written by a process of its own: a
    full-size ViT-L in float32 (1.3 GB) and Lightning's import took a busy xdist worker past the 3 GB rule."""
    pytest.importorskip("pytorch_lightning", reason="the Lightning checkpoint is written by Lightning itself")
    folder = tmp_path_factory.mktemp("corpus")
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "import test_weights_files; test_weights_files.write_corpus(Path(sys.argv[2]))")
    run = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(folder)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    listed = json.loads((folder / "files.json").read_text())
    files = {label: (Path(path), *rest) for label, (path, *rest) in listed.items()}
    with np.load(folder / "maps.npz") as saved:
        maps = {name: saved[name] for name in saved.files}
    yield files, maps
    shutil.rmtree(folder)


def _more_small_files(folder: Path, module: torch.nn.Module, files: dict) -> None:
    legacy = folder / "midas_v21_small-legacy.pt"
    torch.save(torch.load(files["midas_v21_small"][0]), legacy, _use_new_zipfile_serialization=False)
    files["legacy layout"] = (legacy, "midas_v21_small", "")


def _more_hybrid_files(folder: Path, module: torch.nn.Module, files: dict) -> None:
    hybrid = copy.deepcopy(module)  # trained a step: the saved one stays as saved
    optimizer = torch.optim.Adam(hybrid.scratch.parameters())
    hybrid.scratch.output_conv[-2].weight.sum().backward()
    optimizer.step()
    optimizer.zero_grad()
    with_optimizer = folder / "dpt_hybrid-with-optimizer.pt"  # MiDaS's own training save: model beside optimizer
    torch.save({"model": hybrid.state_dict(), "optimizer": optimizer.state_dict()}, with_optimizer)
    files["MiDaS model+optimizer"] = (with_optimizer, "dpt_hybrid", "")
    del hybrid, optimizer
    lightning = folder / "512-depth-ema.ckpt"
    _lightning_checkpoint(lightning, copy.deepcopy(module))
    files["Lightning"] = (lightning, "dpt_hybrid", DEPTH_WEIGHTS_PREFIX)
    lightning_legacy = folder / "512-depth-ema-legacy.ckpt"
    torch.save(torch.load(lightning, weights_only=False), lightning_legacy, _use_new_zipfile_serialization=False)
    files["Lightning, legacy layout"] = (lightning_legacy, "dpt_hybrid", DEPTH_WEIGHTS_PREFIX)


def _more_vits_files(folder: Path, module: torch.nn.Module, files: dict) -> None:
    vits = folder / "depth_anything_v2_vits.safetensors"
    save_file(dict(module.state_dict()), str(vits),
              metadata={"format": "pt", "modelspec.title": "Depth Anything V2 Small"})
    files["safetensors with metadata"] = (vits, "depth_anything_v2_vits", "")


_MORE_FILES = {"midas_v21_small": _more_small_files, "dpt_hybrid": _more_hybrid_files,
               "depth_anything_v2_vits": _more_vits_files}  # the other files made from a network while it is built


@pytest.fixture(scope="module")
def corpus(corpus_and_maps):
    return corpus_and_maps[0]


@pytest.fixture(scope="module")
def expected_maps(corpus_and_maps):
    return corpus_and_maps[1]


LABELS = [*ESTIMATORS, "legacy layout", "MiDaS model+optimizer", "Lightning", "Lightning, legacy layout",
          "safetensors with metadata"]


def _torch_reference(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = unwrap_state_dict(torch.load(path, weights_only=False))  # our own files: torch may run their pickles
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


@pytest.mark.parametrize("label", LABELS)
def test_indexed_recognised_and_read_as_torch_reads_it(corpus, label):
    path, name, prefix = corpus[label]
    expected = _torch_reference(path)
    index = read_tensor_index(path)
    assert {k: (v.shape, v.dtype) for k, v in index.items()} == \
        {k: (tuple(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in expected.items()}
    assert detect_estimator(index, prefix) == name
    tensors = read_state_dict(path, prefix)
    assert tensors.keys() == {k for k in expected if k.startswith(prefix)}
    for key, tensor in tensors.items():
        assert tensor.dtype == expected[key].dtype and torch.equal(tensor, expected[key]), key


def test_lightning_checkpoint_is_a_depth_model_with_its_weights(corpus):
    info = inspect_checkpoint(corpus["Lightning"][0])
    assert (info.is_depth, info.estimator, info.has_depth_weights) == (True, "dpt_hybrid", True)
    assert torch.load(corpus["Lightning"][0], weights_only=False)["hyper_parameters"]["optimizer_class"] \
        is torch.optim.AdamW  # what torch's weights_only loader refuses: a class in the hyper-parameters
    assert read_tensor_index(corpus["Lightning"][0])[UNET_INPUT_KEY].shape == (8, 5, 3, 3)


def _picture_pixels() -> np.ndarray:
    return (synthetic_image(72, 72) * 255).round().astype(np.uint8)  # square: the smallest input


def _picture(path: Path) -> Path:
    Image.fromarray(_picture_pixels()).save(path)
    return path


def _expected_map(module: torch.nn.Module, name: str) -> np.ndarray:
    """The saved module's depth of the picture by the input rule written out, stretched to [0, 1] as the CLI does."""
    pixels = torch.from_numpy(_picture_pixels().astype(np.float32) / 255).permute(2, 0, 1)[None]
    spec = ESTIMATORS[name].input_spec  # a square picture enters at the rule's own size, whatever the rule
    depth = depth_by_the_rule(module, pixels, (spec.size, spec.size), spec.mean, spec.std, output_size=(72, 72),
                              output_mode=spec.output_mode, output_align_corners=spec.output_align_corners)
    depth = depth[0, 0].double().numpy()
    return (depth - depth.min()) / (depth.max() - depth.min())


@pytest.mark.parametrize("label", [*ESTIMATORS, "legacy layout", "Lightning, legacy layout"])
def test_the_cli_recognises_and_uses_each_file(corpus, expected_maps, label, tmp_path):
    """The map the CLI writes from the file equals the depth of the module that was saved."""
    path, name, _ = corpus[label]
    picture = _picture(tmp_path / "scene.png")
    result = subprocess.run([sys.executable, "-m", "lib_depth2img", "depth", str(picture), "--weights", str(path),
                             "--bits", "16", "--device", "cpu"], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert name in result.stderr  # it says which estimator it recognised
    with Image.open(tmp_path / "scene-depth.png") as written:
        got = np.asarray(written, dtype=np.float64) / 65535
    expected = expected_maps[name]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 2e-3
