"""Our plain-torch DPT modules have exactly the key layout of the public weight files."""

import pytest
import torch
from reference import FileCreatingPayload, reference_layout, rule_weights

from lib_depth2img import Depth2ImgError
from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX
from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import estimator_state_from_file, load_estimator_from_file, load_estimator_weights


@pytest.mark.parametrize("name", ["dpt_hybrid", "dpt_large"])
def test_state_dict_matches_release_file_layout(name):
    expected = reference_layout(f"midas-{name}.json")
    actual = {k: tuple(v.shape) for k, v in create_estimator(name, device="meta").state_dict().items()}
    assert actual == expected


def test_hybrid_layout_is_the_depth_slice_of_the_sd2_checkpoint():
    checkpoint = reference_layout("sd2-depth-512-depth-ema.json")
    prefix = DEPTH_WEIGHTS_PREFIX
    depth_slice = {k[len(prefix):]: v for k, v in checkpoint.items() if k.startswith(prefix)}
    actual = {k: tuple(v.shape) for k, v in create_estimator("dpt_hybrid", device="meta").state_dict().items()}
    assert actual == depth_slice


def test_unknown_estimator_name_is_a_clear_error():
    with pytest.raises(Depth2ImgError, match="dpt_hybrid"):
        create_estimator("midas_v4")


def test_loads_release_pt_strictly(midas_pt, hybrid_rule_state):
    estimator = load_estimator_from_file(create_estimator("dpt_hybrid"), midas_pt)
    key = "pretrained.model.blocks.3.attn.qkv.weight"
    assert torch.equal(estimator.state_dict()[key], hybrid_rule_state[key])


def _sd2_style_state(hybrid_state: dict) -> dict:
    """The depth slice as it sits in 512-depth-ema.ckpt, plus a UNet input conv and LitEma leftovers."""
    state = {DEPTH_WEIGHTS_PREFIX + k: v.half() for k, v in hybrid_state.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 5, 3, 3)
    state["model_ema.decay"] = torch.tensor(0.9999)
    state["model_ema.num_updates"] = torch.tensor(10, dtype=torch.int32)
    return state


def test_loads_depth_slice_of_a_whole_ckpt_and_safetensors(tmp_path, hybrid_rule_state):
    from safetensors.torch import save_file

    state = _sd2_style_state(hybrid_rule_state)
    ckpt = tmp_path / "512-depth-ema.ckpt"
    torch.save({"state_dict": state, "global_step": 1}, ckpt)
    single = tmp_path / "512-depth-ema.safetensors"
    save_file(state, str(single))
    key = "scratch.refinenet2.resConfUnit1.conv1.weight"
    for path in (ckpt, single):
        estimator = load_estimator_from_file(create_estimator("dpt_hybrid"), path)
        assert torch.equal(estimator.state_dict()[key], hybrid_rule_state[key].half().float())
        assert next(estimator.parameters()).dtype == torch.float32


def test_layout_mismatch_lists_missing_and_unexpected_keys(hybrid_rule_state):
    state = dict(hybrid_rule_state)
    del state["scratch.output_conv.4.bias"]
    state["scratch.extra.weight"] = torch.zeros(1)
    with pytest.raises(Depth2ImgError) as error:
        load_estimator_weights(create_estimator("dpt_hybrid"), state)
    message = str(error.value)
    assert "1 missing: scratch.output_conv.4.bias" in message
    assert "1 unexpected: scratch.extra.weight" in message
    assert "models/midas" in message


def test_large_weights_do_not_load_into_hybrid():
    # Only the layout is compared: DPT-Large's keys and shapes, each a view of one zero (its weights are 1.3 GB)
    large = {k: torch.zeros(()).expand(shape) for k, shape in reference_layout("midas-dpt_large.json").items()}
    with pytest.raises(Depth2ImgError, match="do not fit the dpt_hybrid"):
        load_estimator_weights(create_estimator("dpt_hybrid"), large)


def test_sd_checkpoint_without_depth_weights_says_which_file_to_use(tmp_path):
    path = tmp_path / "fine-tune.ckpt"
    torch.save({"state_dict": {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}}, path)
    with pytest.raises(Depth2ImgError, match="dpt_hybrid-midas-501f0c75.pt"):
        estimator_state_from_file(path)


def test_missing_weights_file_names_file_and_folder(tmp_path):
    with pytest.raises(Depth2ImgError) as error:
        estimator_state_from_file(tmp_path / "nope.pt")
    assert "nope.pt" in str(error.value) and "models/midas" in str(error.value)


def test_pickled_code_in_a_weights_file_is_read_around_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.arange(3.0)}, "payload": FileCreatingPayload(marker)}, path)
    assert torch.equal(estimator_state_from_file(path)["x"], torch.arange(3.0))
    assert not marker.exists()


@pytest.mark.parametrize("size", ["s", "b", "l"])
def test_depth_anything_v2_layout_matches_the_official_checkpoints(size):
    expected = reference_layout(f"depth-anything-v2-vit{size}.json")
    shapes_only = create_estimator(f"depth_anything_v2_vit{size}", device="meta")
    actual = {k: tuple(v.shape) for k, v in shapes_only.state_dict().items()}
    assert actual == expected


def test_depth_anything_v2_runs_at_its_own_resolution():
    from reference import synthetic_batch

    from lib_depth2img.depth import estimate_depth
    from lib_depth2img.transforms import estimator_input_size

    estimator = create_estimator("depth_anything_v2_vits")
    load_estimator_weights(estimator, rule_weights(reference_layout("depth-anything-v2-vits.json")))
    pictures = torch.cat([synthetic_batch(120, 180), synthetic_batch(120, 180).flip(-1)])
    assert estimator_input_size(120, 180, estimator.input_spec) == (518, 784)  # covers 518, multiple of 14
    depth = estimate_depth(estimator, pictures)
    assert depth.shape == (2, 1, 120, 180) and torch.isfinite(depth).all() and depth.std() > 0
    assert not torch.allclose(depth[0], depth[1])


def _small_release_state() -> dict:
    """Rule-set weights for MiDaS v2.1 small as a 2020 release file would hold them: no BatchNorm counters."""
    layout = reference_layout("midas-v21_small.json")
    state = rule_weights({k: v for k, v in layout.items() if not k.endswith("num_batches_tracked")})
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.5  # a variance is positive
    return state


def test_midas_v21_small_layout_and_optional_batchnorm_counters(tmp_path):
    expected = reference_layout("midas-v21_small.json")
    estimator = create_estimator("midas_v21_small")
    assert {k: tuple(v.shape) for k, v in estimator.state_dict().items()} == expected
    state = _small_release_state()
    torch.save(state, tmp_path / "midas_v21_small-70d6b9c8.pt")  # as a 2020 release file: no counters
    load_estimator_from_file(estimator, tmp_path / "midas_v21_small-70d6b9c8.pt")
    key = "pretrained.layer3.1.2.conv_dw.weight"
    assert torch.equal(estimator.state_dict()[key], state[key])


def test_midas_v21_small_runs_at_its_own_resolution():
    from reference import synthetic_batch

    from lib_depth2img.depth import estimate_depth
    from lib_depth2img.transforms import estimator_input_size

    estimator = create_estimator("midas_v21_small")
    load_estimator_weights(estimator, _small_release_state())
    pictures = torch.cat([synthetic_batch(300, 500), synthetic_batch(300, 500).flip(-2)])
    assert estimator_input_size(300, 500, estimator.input_spec) == (160, 256)
    depth = estimate_depth(estimator, pictures)
    assert depth.shape == (2, 1, 300, 500) and torch.isfinite(depth).all() and depth.std() > 0
    assert not torch.allclose(depth[0], depth[1])


@pytest.mark.parametrize("name", ["dpt_hybrid", "dpt_large", "midas_v21_small", "depth_anything_v2_vits",
                                  "depth_anything_v2_vitb", "depth_anything_v2_vitl"])
def test_every_estimator_in_the_registry_is_whole(name):
    """Builds on the meta device (shapes only), is recognised from its own keys and from no other's, and has
    the facts that lookups and messages need."""
    from lib_depth2img.estimators import ESTIMATORS, detect_estimator, where_weights_live
    from lib_depth2img.transforms import InputSpec

    spec = ESTIMATORS[name]
    with torch.device("meta"):
        module = create_estimator(name)
    assert module.estimator_name == name and module.input_spec is spec.input_spec
    assert isinstance(spec.input_spec, InputSpec)
    index = module.state_dict()
    assert detect_estimator(index) == name
    assert detect_estimator({f"depth_model.model.{k}": v for k, v in index.items()}, "depth_model.model.") == name
    assert [other for other in ESTIMATORS.values() if other.matches({k: v.shape for k, v in index.items()})] == [spec]
    assert spec.release_files and spec.folders and spec.licence and spec.description and spec.title
    assert spec.release_files[0] in where_weights_live() and f"models/{spec.folders[0]}/" in where_weights_live()


def test_non_commercial_weights_are_named_as_such():
    from lib_depth2img.estimators import ESTIMATORS, non_commercial_note
    from lib_depth2img.generation_args import setting_metadata

    assert [n for n, spec in ESTIMATORS.items() if spec.non_commercial] == ["depth_anything_v2_vitb",
                                                                           "depth_anything_v2_vitl"]
    note = non_commercial_note(["dpt_large", "depth_anything_v2_vitl"])
    assert note.startswith("Depth Anything V2 Large:") and "CC-BY-NC-4.0" in note and "non-commercial" in note
    assert non_commercial_note(["dpt_large", "depth_anything_v2_vits"]) == ""
    help_text = setting_metadata("depth_source")["help"]
    assert help_text.count("non-commercial use only") == 2


def test_slider_bounds_are_the_accepted_ranges():
    from lib_depth2img.adjustments import ADJUSTMENT_BOUNDS, DepthAdjustments
    from lib_depth2img.generation_args import DepthArgs, setting_metadata

    for name, (low, high, _) in ADJUSTMENT_BOUNDS.items():
        assert setting_metadata(name)["bounds"][:2] == (low, high)
        edge = {"near": {"far": 0.0}, "far": {"near": 1.0}}.get(name, {})
        DepthArgs(**{name: low if name != "near" else high, **edge})  # the slider's ends are accepted
        with pytest.raises(Depth2ImgError, match=f"'{name}'"):
            DepthAdjustments(**{name: high + 0.01 if name != "far" else -0.01})
