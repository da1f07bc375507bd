"""Estimators load their file's weights whatever a host did to ``torch.nn.Module.load_state_dict``.

WebUI v1.10.1 replaces it (and ``_load_from_state_dict`` of the common layers) while it loads a model
(``LoadStateDictOnMeta``); its replacement takes no ``assign`` and calls the original without it, and two
overlapping loads leave it in place until restart. Here the replacement is installed with the WebUI's
signature, either failing outright or doing what the WebUI's does, and every kind of estimator must still
hold exactly the file's weights."""

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_estimators import create_tiny_estimator, tiny_rule_state
from torch import nn

from lib_depth2img.checkpoint_estimator import load_checkpoint_estimator
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_from_file, load_estimator_weights

ORIGINAL_LOAD = nn.Module.load_state_dict


@pytest.fixture(params=["fails", "drops assign"])
def host_patch(request, monkeypatch) -> None:
    calls = []

    def load_state_dict(self, state_dict, strict=True):  # the WebUI's signature: no assign
        calls.append(type(self).__name__)
        if request.param == "fails":
            raise RuntimeError("the host's load_state_dict was called")
        return ORIGINAL_LOAD(self, state_dict, strict=strict)  # as the WebUI's does: assign is lost

    def load_from_state_dict(self, *args, **kwargs):
        calls.append(type(self).__name__)
        raise RuntimeError("the host's _load_from_state_dict was called")

    monkeypatch.setattr(nn.Module, "load_state_dict", load_state_dict)
    if request.param == "fails":
        for layer in (nn.Module, nn.Linear, nn.Conv2d, nn.MultiheadAttention, nn.LayerNorm, nn.GroupNorm):
            monkeypatch.setattr(layer, "_load_from_state_dict", load_from_state_dict)
    yield
    assert not calls, f"the host's replacement was used: {calls[:3]}"


def _holds_exactly(estimator: nn.Module, expected: dict[str, torch.Tensor], fresh: nn.Module) -> None:
    state = estimator.state_dict()
    assert state.keys() == expected.keys()
    for key, tensor in expected.items():
        assert state[key].dtype == tensor.dtype and torch.equal(state[key], tensor), key
    for (name, parameter), (_, built) in zip(estimator.named_parameters(), fresh.named_parameters(), strict=True):
        assert isinstance(parameter, nn.Parameter) and parameter.requires_grad == built.requires_grad, name
        assert not parameter.is_meta, name


@pytest.mark.parametrize("name", ["dpt_hybrid", "depth_anything_v2_vits"])
def test_tiny_estimators_load_from_files_of_both_kinds(host_patch, tiny_estimators, tmp_path, name):
    weights = tiny_rule_state(name)
    pickled, single = tmp_path / "weights.pt", tmp_path / "weights.safetensors"
    torch.save(weights, pickled)
    save_file(weights, str(single))
    for path in (pickled, single):
        expected = torch.load(path, weights_only=True) if path == pickled else load_file(str(path))
        estimator = load_estimator_from_file(create_estimator(name, device="meta"), path)
        _holds_exactly(estimator, expected, create_tiny_estimator(name))


def test_an_estimator_built_with_memory_is_filled_in_place(host_patch, tiny_estimators):
    estimator = create_tiny_estimator("dpt_hybrid")
    weight = estimator.scratch.output_conv[0].weight
    load_estimator_weights(estimator, tiny_rule_state("dpt_hybrid"))
    assert estimator.scratch.output_conv[0].weight is weight  # copied into, not replaced
    _holds_exactly(estimator, tiny_rule_state("dpt_hybrid"), create_tiny_estimator("dpt_hybrid"))


def test_a_checkpoints_depth_slice_loads(host_patch, tiny_estimators, tiny_depth_checkpoint_file):
    estimator = load_checkpoint_estimator(tiny_depth_checkpoint_file, "dpt_hybrid")
    prefix = "depth_model.model."
    expected = {k[len(prefix):]: v for k, v in load_file(str(tiny_depth_checkpoint_file)).items()
                if k.startswith(prefix)}
    _holds_exactly(estimator, expected, create_tiny_estimator("dpt_hybrid"))


def test_a_full_size_estimator_loads_from_its_release_file(host_patch, tmp_path):
    torch.manual_seed(0)
    built = create_estimator("midas_v21_small")  # torch's init: weights that are not all alike
    path = tmp_path / "midas_v21_small-70d6b9c8.pt"
    torch.save(built.state_dict(), path)
    estimator = load_estimator_from_file(create_estimator("midas_v21_small", device="meta"), path)
    _holds_exactly(estimator, torch.load(path, weights_only=True), built)
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(estimator(x), built(x))

