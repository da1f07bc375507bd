"""diffusers depth pipeline <-> single-file checkpoint, on random weights in the exact public layouts (full size)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers_folder import (
    LAYOUT,
    SCHEDULER,
    WEIGHTS_FILES,
    read_all,
    run_convert,
    save_lightning_checkpoint,
    write_depth_pipeline_apart,
)
from omegaconf import OmegaConf
from reference import load_reference
from safetensors import safe_open

from lib_depth2img.checkpoint import inspect_checkpoint

CHECKPOINT = load_reference("sd2-depth-512-depth-ema.json")["tensors"]
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("conversion")
    folder = write_depth_pipeline_apart(root / "diffusers")
    checkpoint = root / "ckpt" / "depth-finetune.safetensors"
    to_checkpoint = run_convert(folder, checkpoint)
    assert to_checkpoint[1], to_checkpoint[0].stderr
    back = run_convert(checkpoint, root / "back", "--to", "diffusers", "--base", folder)
    assert back[1], back[0].stderr
    yield folder, checkpoint, root / "back", to_checkpoint
    shutil.rmtree(root)  # about 8 GB: pytest keeps the last runs' folders, which would fill a CI disk


def test_checkpoint_has_exactly_the_layout_of_512_depth_ema(converted):
    _, checkpoint, _, _ = converted
    with safe_open(str(checkpoint), "pt") as f:
        shapes = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118
    assert shapes == {k: shape for k, (shape, _) in CHECKPOINT.items()}
    schedule = {k for k in CHECKPOINT if "." not in k}
    assert {k for k, dtype in dtypes.items() if dtype != "F16"} == schedule  # float16 in, float16 out


def test_progress_is_shown_per_part_and_peak_memory_stays_well_under_the_model_size(converted):
    folder, checkpoint, _, (run, peak) = converted
    for part in ("UNet", "VAE", "text encoder", "depth estimator"):
        assert f"{checkpoint.name}: {part}" in run.stderr
    model = sum((folder / name / file).stat().st_size for name, file in WEIGHTS_FILES.items())
    print(f"\nconversion of {model / 2**30:.2f} GiB: peak resident memory {peak / 2**20:.0f} MiB "
          f"({peak / model:.2f}x the model)")
    assert peak < 1.5 * model


def test_round_trip_gives_identical_tensors_and_configs(converted):
    folder, _, back, _ = converted
    for name, file in WEIGHTS_FILES.items():
        before, after = read_all(folder / name / file), read_all(back / name / file)
        assert before.keys() == after.keys(), name
        different = [k for k in before if before[k].dtype != after[k].dtype or not torch.equal(before[k], after[k])]
        assert not different, (name, different[:5])
        config = json.loads((back / name / "config.json").read_text())
        unversioned = {k: v for k, v in LAYOUT["components"][name]["config"].items()
                       if k not in ("_diffusers_version", "transformers_version", "torch_dtype")}
        assert {k: config[k] for k in unversioned} == unversioned, name
    assert json.loads((back / "model_index.json").read_text())["_class_name"] == LAYOUT["model_index"]["_class_name"]
    scheduler = json.loads((back / "scheduler" / "scheduler_config.json").read_text())
    assert {k: scheduler[k] for k in SCHEDULER} == SCHEDULER
    for name in ("tokenizer", "feature_extractor"):  # copied from --base
        assert json.loads((back / name / "marker.json").read_text()) == {"from": name}


def test_tensors_land_where_ldm_reads_them(converted):
    folder, checkpoint, _, _ = converted
    ckpt = read_all(checkpoint)
    unet, vae = read_all(folder / "unet" / WEIGHTS_FILES["unet"]), read_all(folder / "vae" / WEIGHTS_FILES["vae"])
    text = read_all(folder / "text_encoder" / "model.safetensors")
    depth = read_all(folder / "depth_estimator" / "model.safetensors")
    assert torch.equal(ckpt["model.diffusion_model.input_blocks.4.1.proj_in.weight"],
                       unet["down_blocks.1.attentions.0.proj_in.weight"])
    assert torch.equal(ckpt["model.diffusion_model.output_blocks.2.1.conv.weight"],
                       unet["up_blocks.0.upsamplers.0.conv.weight"])
    assert torch.equal(ckpt["first_stage_model.decoder.up.3.block.0.conv1.weight"],
                       vae["decoder.up_blocks.0.resnets.0.conv1.weight"])  # diffusers counts up from the deepest
    assert torch.equal(ckpt["first_stage_model.encoder.mid.attn_1.q.weight"],
                       vae["encoder.mid_block.attentions.0.query.weight"][:, :, None, None])
    layer = "text_model.encoder.layers.5.self_attn."
    assert torch.equal(ckpt["cond_stage_model.model.transformer.resblocks.5.attn.in_proj_weight"],
                       torch.cat([text[layer + f"{q}_proj.weight"] for q in "qkv"]))
    assert not ckpt["cond_stage_model.model.transformer.resblocks.23.mlp.c_fc.weight"].any()  # SD2 never runs it
    attention = "dpt.encoder.layer.7.attention.attention."
    assert torch.equal(ckpt["depth_model.model.pretrained.model.blocks.7.attn.qkv.bias"],
                       torch.cat([depth[attention + f"{q}.bias"] for q in ("query", "key", "value")]))


def test_yaml_is_the_depth_config_with_the_schedulers_values(converted):
    _, checkpoint, _, _ = converted
    params = OmegaConf.load(checkpoint.with_suffix(".yaml")).model.params
    assert params.parameterization == "eps" and params.linear_start == SCHEDULER["beta_start"]
    assert params.unet_config.params.in_channels == 5 and params.depth_stage_config.params.model_type == "dpt_hybrid"
    assert inspect_checkpoint(checkpoint).is_depth
    buffers = read_all(checkpoint)
    betas = np.linspace(SCHEDULER["beta_start"] ** 0.5, SCHEDULER["beta_end"] ** 0.5, 1000) ** 2
    np.testing.assert_allclose(buffers["alphas_cumprod"].numpy(), np.cumprod(1 - betas), rtol=1e-6)


def test_a_pickled_ckpt_without_yaml_converts_like_the_safetensors_file(converted, tmp_path):
    folder, checkpoint, _, _ = converted
    legacy = tmp_path / "512-depth-ema.ckpt"  # Lightning's layout; no yaml beside it: SD2's config is assumed
    save_lightning_checkpoint(checkpoint, legacy)  # torch.save, without holding the 2.8 GB state in memory
    try:
        # A folder an earlier conversion left, with a note of the person's and a config damaged by hand: one
        # full conversion (CI time) both refuses to touch it without --overwrite and repairs it with it.
        (tmp_path / "back" / "unet").mkdir(parents=True)
        (tmp_path / "back" / "notes.txt").write_text("mine")
        (tmp_path / "back" / "unet" / "config.json").write_text("{}")
        refused, _ = run_convert(legacy, tmp_path / "back", "--to", "diffusers")
        assert refused.returncode == 2 and "--overwrite" in refused.stderr
        run, peak = run_convert(legacy, tmp_path / "back", "--to", "diffusers", "--overwrite")
        assert peak, run.stderr
        assert "copy tokenizer/ and feature_extractor/" in run.stderr
        assert (tmp_path / "back" / "notes.txt").read_text() == "mine"  # only the model's own files replaced
        assert json.loads((tmp_path / "back" / "unet" / "config.json").read_text())["in_channels"] == 5
        for name in ("unet", "text_encoder"):
            before = read_all(folder / name / WEIGHTS_FILES[name])
            after = read_all(tmp_path / "back" / name / WEIGHTS_FILES[name])
            assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
        assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    finally:
        shutil.rmtree(tmp_path)
