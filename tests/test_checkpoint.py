"""Depth checkpoint detection: the yaml first, then the weights, from headers and pickles only."""

import json
import os
import pickle
import struct
import zipfile

import pytest
import torch
from reference import FileCreatingPayload
from safetensors.torch import save_file

from lib_depth2img import Depth2ImgError
from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.tensor_index import read_tensor_index

DEPTH_YAML = """
model:
  target: ldm.models.diffusion.ddpm.LatentDepth2ImageDiffusion
  params:
    depth_stage_config:
      target: ldm.modules.midas.api.MiDaSInference
      params:
        model_type: "dpt_hybrid"
    unet_config:
      params:
        in_channels: 5
"""
PLAIN_YAML = """
model:
  target: ldm.models.diffusion.ddpm.LatentDiffusion
  params:
    unet_config:
      params:
        in_channels: 4
"""
UNET_KEY = "model.diffusion_model.input_blocks.0.0.weight"


def _unet(channels: int) -> dict:
    return {UNET_KEY: torch.zeros(320, channels, 3, 3), "first_stage_model.encoder.conv_in.weight": torch.zeros(1)}


def test_depth_yaml_beside_the_checkpoint_decides(tmp_path):
    ckpt = tmp_path / "512-depth-ema.safetensors"
    save_file(_unet(4), str(ckpt))  # the weights would say "plain": the yaml wins, as in the WebUI
    (tmp_path / "512-depth-ema.yaml").write_text(DEPTH_YAML)
    info = inspect_checkpoint(ckpt)
    assert (info.is_depth, info.estimator, info.source) == (True, "dpt_hybrid", "yaml")
    assert "512-depth-ema.yaml" in info.reason


def test_yaml_model_type_names_the_estimator(tmp_path):
    ckpt = tmp_path / "large.ckpt"
    torch.save({"state_dict": _unet(5)}, ckpt)
    (tmp_path / "large.yaml").write_text(DEPTH_YAML.replace('"dpt_hybrid"', "dpt_large"))
    assert inspect_checkpoint(ckpt).estimator == "dpt_large"


def test_non_depth_yaml(tmp_path):
    ckpt = tmp_path / "v2.safetensors"
    save_file(_unet(4), str(ckpt))
    (tmp_path / "v2.yaml").write_text(PLAIN_YAML)
    info = inspect_checkpoint(ckpt)
    assert not info.is_depth and info.source == "yaml" and "LatentDiffusion" in info.reason


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_depth_keys_without_yaml(tmp_path, suffix):
    state = _unet(5) | {"depth_model.model.pretrained.model.patch_embed.backbone.stem.conv.weight": torch.zeros(2),
                        "depth_model.model.scratch.output_conv.4.bias": torch.zeros(1)}
    ckpt = tmp_path / f"depth{suffix}"
    save_file(state, str(ckpt)) if suffix == ".safetensors" else torch.save({"state_dict": state}, ckpt)
    info = inspect_checkpoint(ckpt)
    assert (info.is_depth, info.estimator, info.source, info.has_depth_weights) == (True, "dpt_hybrid", "weights", True)


def test_five_channel_unet_without_depth_weights(tmp_path):
    ckpt = tmp_path / "finetune.safetensors"
    save_file(_unet(5), str(ckpt))
    info = inspect_checkpoint(ckpt)
    assert info.is_depth and info.has_depth_weights is False and info.estimator == "dpt_hybrid"
    assert "models/midas" in info.reason


@pytest.mark.parametrize(("channels", "word"), [(4, "plain"), (9, "inpainting")])
def test_other_unets_are_not_depth(tmp_path, channels, word):
    ckpt = tmp_path / "other.safetensors"
    save_file(_unet(channels), str(ckpt))
    info = inspect_checkpoint(ckpt)
    assert not info.is_depth and word in info.reason


def test_malformed_yaml_names_the_file_and_cause(tmp_path):
    ckpt = tmp_path / "broken.safetensors"
    save_file(_unet(5), str(ckpt))
    (tmp_path / "broken.yaml").write_text("model:\n  target: [unclosed\n")
    with pytest.raises(Depth2ImgError, match="broken.yaml"):
        inspect_checkpoint(ckpt)


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_truncated_file_is_a_clear_error(tmp_path, suffix):
    whole = tmp_path / f"whole{suffix}"
    state = _unet(5)
    save_file(state, str(whole)) if suffix == ".safetensors" else torch.save({"state_dict": state}, whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(Depth2ImgError, match="cut"):
        inspect_checkpoint(cut)


def test_not_a_checkpoint_at_all(tmp_path):
    junk = tmp_path / "notes.ckpt"
    junk.write_text("hello, this is not a model")
    with pytest.raises(Depth2ImgError, match="is a text file .* not a weights file") as error:
        inspect_checkpoint(junk)
    assert "again" not in str(error.value)  # a re-download would not help


def test_missing_file(tmp_path):
    with pytest.raises(Depth2ImgError, match="does not exist"):
        inspect_checkpoint(tmp_path / "gone.safetensors")


def test_pickled_code_is_never_run_and_lightning_extras_are_ignored(tmp_path):
    marker = tmp_path / "ran"
    ckpt = tmp_path / "lightning.ckpt"
    payload = FileCreatingPayload(marker)
    torch.save({"state_dict": _unet(5), "callbacks": {"ModelCheckpoint": payload}, "global_step": 7}, ckpt)
    info = inspect_checkpoint(ckpt)
    assert info.is_depth and not marker.exists()


def test_legacy_torch_layout(tmp_path):
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": _unet(5)}, ckpt, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(ckpt)
    assert read_tensor_index(ckpt)[UNET_KEY].shape == (320, 5, 3, 3)


def test_safetensors_read_from_header_only(tmp_path):
    """A sparse 4 GiB file: only the header is real, the tensor data is a hole that is never read."""
    unet_end = 4 + 320 * 5 * 3 * 3 * 2
    header = json.dumps({"depth_model.model.scratch.output_conv.4.bias": {"dtype": "F32", "shape": [1],
                                                                         "data_offsets": [0, 4]},
                         UNET_KEY: {"dtype": "F16", "shape": [320, 5, 3, 3], "data_offsets": [4, unet_end]},
                         "first_stage_model.huge": {"dtype": "F16", "shape": [2**31],
                                                    "data_offsets": [unet_end, unet_end + 4 * 2**30]}})
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(header)) + header.encode())
        f.truncate(8 + len(header) + unet_end + 4 * 2**30)
    index = read_tensor_index(path)
    assert index[UNET_KEY].dtype == "float16"
    assert inspect_checkpoint(path).is_depth


def test_cached_per_file_state(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    save_file(_unet(5), str(ckpt))
    first = inspect_checkpoint(ckpt)
    assert inspect_checkpoint(ckpt) is first
    save_file(_unet(4), str(ckpt))
    os.utime(ckpt, ns=(ckpt.stat().st_atime_ns, ckpt.stat().st_mtime_ns + 10**9))
    assert not inspect_checkpoint(ckpt).is_depth
    (tmp_path / "model.yaml").write_text(DEPTH_YAML)
    assert inspect_checkpoint(ckpt).source == "yaml"


def test_index_unpickler_resolves_no_real_globals(tmp_path):
    """The pickle names os.system; the reader must hand back a placeholder, not the function."""
    path = tmp_path / "plain.pt"
    payload = pickle.dumps({"state_dict": {"x": os.system}})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("plain/data.pkl", payload)
    assert read_tensor_index(path) == {}
