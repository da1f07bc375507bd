"""The depth command end to end, in a subprocess, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from reference import synthetic_image

ROOT = Path(__file__).parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lib_depth2img", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _picture(path: Path, height: int, width: int, flip: bool = False) -> Path:
    pixels = (synthetic_image(height, width) * 255).round().astype(np.uint8)
    Image.fromarray(pixels[:, ::-1] if flip else pixels).save(path)
    return path


def test_depth_maps_for_several_pictures(tmp_path, midas_pt):
    first = _picture(tmp_path / "street.png", 96, 160)
    second = _picture(tmp_path / "portrait.jpg", 160, 96, flip=True)
    out = tmp_path / "out"
    result = _run("depth", first, second, "--weights", midas_pt, "-o", out)
    assert result.returncode == 0, result.stderr
    maps = [out / "street-depth.png", out / "portrait-depth.png"]
    assert result.stdout.split() == [str(p) for p in maps]
    assert "2/2" in result.stderr  # the progress bar
    for path, size in zip(maps, [(160, 96), (96, 160)], strict=True):
        with Image.open(path) as image:
            assert image.mode == "L" and image.size == size
            assert np.asarray(image).std() > 0


def test_sixteen_bit_beside_the_picture_from_a_whole_checkpoint(tmp_path, hybrid_rule_state):
    weights = tmp_path / "512-depth-ema.ckpt"
    state = {f"depth_model.model.{k}": v for k, v in hybrid_rule_state.items()}
    state["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(320, 5, 3, 3)
    torch.save({"state_dict": state}, weights)
    picture = _picture(tmp_path / "room.png", 64, 64)
    result = _run("depth", picture, "--weights", weights, "--bits", "16")
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "room-depth.png") as image:
        assert image.mode.startswith("I") and image.size == (64, 64)


def test_missing_weights_says_where_they_live(tmp_path):
    picture = _picture(tmp_path / "a.png", 32, 32)
    result = _run("depth", picture, "--weights", tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    assert result.returncode == 2
    assert "dpt_hybrid-midas-501f0c75.pt" in result.stderr and "models/midas" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_weights_file_says_what_was_expected(tmp_path):
    picture = _picture(tmp_path / "a.png", 32, 32)
    wrong = tmp_path / "vae.pt"
    torch.save({"encoder.conv_in.weight": torch.zeros(4)}, wrong)
    result = _run("depth", picture, "--weights", wrong)
    assert result.returncode == 2
    assert "vae.pt" in result.stderr and "dpt_hybrid-midas-501f0c75.pt" in result.stderr
    assert "Traceback" not in result.stderr
