"""The converter's pieces on small inputs: messages for bad input, dtype rules, interrupted writes, estimator output."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers_folder import LAYOUT, write_depth_pipeline
from reference import load_reference, synthetic_batch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lib_depth2img.cli import main
from lib_depth2img.conversion.dpt_keys import dpt_to_midas, dpt_to_transformers
from lib_depth2img.conversion.ldm_yaml import SD2_DEPTH, depth_yaml
from lib_depth2img.conversion.plan import Planned, constant, renamed
from lib_depth2img.conversion.tensor_files import StateDictSource, WeightsFilesSource, write_safetensors
from lib_depth2img.conversion.vae_keys import vae_to_ldm
from lib_depth2img.depth import estimate_depth
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import create_estimator
from lib_depth2img.tensor_index import TensorInfo
from lib_depth2img.weights import load_estimator_weights


def error_of(capsys, *argv) -> str:
    assert main(["convert", *map(str, argv)]) == 2
    return capsys.readouterr().err


def test_a_folder_that_is_no_depth_pipeline_says_what_is_missing(tmp_path, capsys):
    assert "has no model_index.json" in error_of(capsys, tmp_path, tmp_path / "out.safetensors")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"in_channels": 4}))
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
    message = error_of(capsys, tmp_path, tmp_path / "out.safetensors")
    for expected in ("names StableDiffusionPipeline, not StableDiffusionDepth2ImgPipeline",
                     "only pickled diffusion_pytorch_model.bin", "safe_serialization=True",
                     "depth_estimator/config.json is missing", "takes 4 input channels where a depth UNet takes 5"):
        assert expected in message
    assert not (tmp_path / "out.safetensors").exists()


def test_wrong_output_names_and_sources_are_refused_before_any_work(tmp_path, capsys):
    folder = write_depth_pipeline(tmp_path / "d", components=("vae",))  # incomplete: fails if it got that far
    assert "written as .safetensors only" in error_of(capsys, folder, tmp_path / "out.ckpt")
    plain = tmp_path / "plain.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(plain))
    assert "add --to diffusers" in error_of(capsys, plain, tmp_path / "x")
    assert "is not a depth model" in error_of(capsys, plain, tmp_path / "x", "--to", "diffusers")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    assert "is not empty" in error_of(capsys, plain, tmp_path / "busy", "--to", "diffusers")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"
    (tmp_path / "mine.safetensors").write_bytes(b"an earlier model")
    (tmp_path / "mine.yaml").write_text("its config")
    message = error_of(capsys, write_depth_pipeline(tmp_path / "e", components=("vae",)), tmp_path / "mine.safetensors")
    assert "already exist" in message and "--overwrite" in message
    assert (tmp_path / "mine.safetensors").read_bytes() == b"an earlier model"


def test_half_casts_floats_only_and_keeps_what_must_stay_exact(tmp_path):
    source = StateDictSource({"w": torch.randn(3, 2), "ids": torch.arange(4)})
    plan = [renamed("w2", "w", (3, 2)), renamed("ids2", "ids", (4,)),
            constant("alphas", torch.linspace(0, 1, 5, dtype=torch.float32), keep_dtype=True)]
    write_safetensors(tmp_path / "o.safetensors", [("part", plan)], source, torch.float16)
    with safe_open(str(tmp_path / "o.safetensors"), "pt") as f:
        assert f.get_tensor("w2").dtype == torch.float16 and f.get_tensor("ids2").dtype == torch.int64
        assert f.get_tensor("alphas").dtype == torch.float32
        assert torch.equal(f.get_tensor("w2"), source.read("w").half())


def test_an_interrupted_write_leaves_no_file(tmp_path):
    def fail(tensors):
        raise KeyboardInterrupt

    source = StateDictSource({"w": torch.ones(2)})
    plan = [renamed("a", "w", (2,)), Planned("b", (2,), ("w",), fail)]
    with pytest.raises(KeyboardInterrupt):
        write_safetensors(tmp_path / "o.safetensors", [("part", plan)], source, torch.float32)
    assert list(tmp_path.iterdir()) == []


def test_the_writer_never_writes_through_a_planted_link(tmp_path):
    """A link at the name a half-written file once had, and one at the output's own name: neither is followed."""
    victims = [tmp_path / "victim1.txt", tmp_path / "victim2.txt"]
    for victim in victims:
        victim.write_text("mine")
    out = tmp_path / "o.safetensors"
    (tmp_path / "o.safetensors.partial").symlink_to(victims[0])
    out.symlink_to(victims[1])
    source = StateDictSource({"w": torch.ones(2)})
    write_safetensors(out, [("part", [renamed("w", "w", (2,))])], source, torch.float32)
    assert [victim.read_text() for victim in victims] == ["mine", "mine"]
    assert not out.is_symlink() and torch.equal(load_file(str(out))["w"], torch.ones(2))


def _small_depth_checkpoint(path):
    """One tensor of each part, in 512-depth-ema's layout: enough for the converter to run end to end."""
    layout = load_reference("sd2-depth-512-depth-ema.json")["tensors"]
    one_per_part = ("model.diffusion_model.input_blocks.0.", "first_stage_model.encoder.conv_in.",
                    "cond_stage_model.model.positional_embedding",
                    "depth_model.model.pretrained.model.patch_embed.backbone.stem.")  # recognised as DPT-Hybrid
    save_file({k: torch.zeros(shape, dtype=torch.float16) for k, (shape, dtype) in layout.items()
               if k.startswith(one_per_part)}, str(path))
    return path


def test_a_diffusers_folder_that_is_a_link_is_refused_and_links_inside_are_replaced(tmp_path):
    from lib_depth2img.conversion.to_diffusers import checkpoint_to_diffusers

    checkpoint = _small_depth_checkpoint(tmp_path / "depth.safetensors")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "linked").symlink_to(elsewhere)
    with pytest.raises(Depth2ImgError, match="is a symbolic link"):
        checkpoint_to_diffusers(checkpoint, tmp_path / "linked")
    assert list(elsewhere.iterdir()) == []
    victim_folder, victim = tmp_path / "victim", tmp_path / "victim.json"
    victim_folder.mkdir()
    victim.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "unet").symlink_to(victim_folder)
    (out / "model_index.json").symlink_to(victim)
    checkpoint_to_diffusers(checkpoint, out, overwrite=True)
    assert victim.read_text() == "mine" and list(victim_folder.iterdir()) == []
    assert not (out / "unet").is_symlink() and (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert json.loads((out / "model_index.json").read_text())["_class_name"] == "StableDiffusionDepth2ImgPipeline"


def test_newer_diffusers_vae_attention_names_are_read_too():
    names = {k: TensorInfo(tuple(shape), dtype) for k, (shape, dtype) in LAYOUT["components"]["vae"]["tensors"].items()}
    modern = {LAYOUT["components"]["vae"]["vae_modern_aliases"].get(k, k): v for k, v in names.items()}
    config = LAYOUT["components"]["vae"]["config"]
    assert [(p.name, p.shape) for p in vae_to_ldm(modern, config)] == [(p.name, p.shape)
                                                                       for p in vae_to_ldm(names, config)]


def test_v_prediction_and_other_text_encoders():
    v = depth_yaml(**{**SD2_DEPTH, "scheduler": {**SD2_DEPTH["scheduler"], "prediction_type": "v_prediction"}})
    assert v["model"]["params"]["parameterization"] == "v"
    with pytest.raises(Depth2ImgError, match="not SD2's OpenCLIP ViT-H/14"):
        depth_yaml(**{**SD2_DEPTH, "text_encoder": {"hidden_size": 768, "num_hidden_layers": 12}})


def test_depth_estimator_gives_the_same_depth_after_conversion_both_ways(tmp_path, tiny_estimators, tiny_hybrid_state,
                                                                          tiny_hybrid):
    """The key conversions on the small DPT-Hybrid (its keys are the release file's, fewer and narrower); the
    full-size layouts are checked in test_conversion_dpt_keys.py and test_conversion.py."""
    state = StateDictSource(tiny_hybrid_state)
    write_safetensors(tmp_path / "model.safetensors", [("depth", dpt_to_transformers(state.index))], state,
                      torch.float32)
    transformers_layout = WeightsFilesSource([tmp_path / "model.safetensors"])
    layout = {k: tuple(v.shape) for k, v in tiny_hybrid_state.items()}
    write_safetensors(tmp_path / "midas.safetensors", [("depth", dpt_to_midas(transformers_layout.index, layout))],
                      transformers_layout, torch.float32)
    estimator = create_estimator("dpt_hybrid")
    midas = WeightsFilesSource([tmp_path / "midas.safetensors"])
    load_estimator_weights(estimator, {k: midas.read(k) for k in midas.index})
    picture = synthetic_batch(384, 384)
    before, after = estimate_depth(tiny_hybrid, picture), estimate_depth(estimator, picture)
    assert (after - before).abs().max() <= 1e-4 * (before.max() - before.min())


def test_an_interrupted_conversion_to_diffusers_leaves_the_chosen_folder_as_it_was(tmp_path, monkeypatch):
    from lib_depth2img.conversion import to_diffusers

    checkpoint = _small_depth_checkpoint(tmp_path / "depth.safetensors")

    def interrupted(path, *args, **kwargs):
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(to_diffusers, "write_safetensors", interrupted)
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        with pytest.raises(KeyboardInterrupt):
            to_diffusers.checkpoint_to_diffusers(checkpoint, out)
    assert not (tmp_path / "new").exists() and list((tmp_path / "empty").iterdir()) == []
