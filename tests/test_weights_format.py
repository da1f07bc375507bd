"""Damaged and foreign files: each gets a message that says what it is, and only our own error type,
whatever bytes it holds. The advice must fit: "get it again" only where that helps."""

import io
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from tiny_estimators import tiny_rule_state

from lib_depth2img import Depth2ImgError
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.weights import estimator_state_from_file, read_state_dict

ROOT = Path(__file__).parent.parent


def _small_state() -> dict:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return module.state_dict()


def _zip_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": _small_state(), "epoch": 3, "callbacks": {"cb": {"best": 0.5}}}, buffer)
    return buffer.getvalue()


def _legacy_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save({"state_dict": _small_state(), "epoch": 3}, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def _safetensors_bytes(tmp_path: Path) -> bytes:
    save_file({k: v.contiguous() for k, v in _small_state().items()}, str(tmp_path / "x.safetensors"))
    return (tmp_path / "x.safetensors").read_bytes()


def _message(path: Path) -> str:
    with pytest.raises(Depth2ImgError) as error:
        read_tensor_index(path)
    return str(error.value)


CASES = {  # name, content -> words the message must have, and whether "get it again" is right
    "text.safetensors": (b"this file only has words in it\n" * 4, ["a text file", "not a weights file"], False),
    "page.ckpt": (b"<!DOCTYPE html><html><head><title>Sign in</title></head></html>", ["a web page"], True),
    "lfs.safetensors": (b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 5705\n",
                        ["Git LFS pointer", "5,705 bytes", "git lfs pull"], False),
    "empty.pt": (b"", ["empty"], True),
    "model.gguf": (b"GGUF\x03\x00\x00\x00" + bytes(64), ["GGUF"], False),
    "plain.pkl.pt": (pickle.dumps({"a": 1}, protocol=2), ["Python pickle", "not a PyTorch checkpoint"], False),
}


@pytest.mark.parametrize("name", CASES)
def test_a_foreign_file_says_what_it_is(tmp_path, name):
    content, words, again = CASES[name]
    path = tmp_path / name
    path.write_bytes(content)
    message = _message(path)
    assert all(word in message for word in words), message
    assert ("again" in message) == again, message


def test_a_folder_is_not_called_missing(tmp_path):
    (tmp_path / "dpt_hybrid-midas-501f0c75.pt").write_bytes(_zip_bytes())
    message = _message(tmp_path)
    assert "is a folder" in message and "dpt_hybrid-midas-501f0c75.pt" in message and "exist" not in message


def test_a_zip_that_is_no_checkpoint(tmp_path):
    path = tmp_path / "pictures.ckpt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.png", b"\x89PNG")
    assert "zip archive but not a PyTorch checkpoint" in _message(path)


@pytest.mark.parametrize("layout", ["zip", "legacy", "safetensors"])
def test_a_file_cut_short_says_so_and_to_get_it_again(tmp_path, layout):
    content = {"zip": _zip_bytes, "legacy": _legacy_bytes}.get(layout, lambda: _safetensors_bytes(tmp_path))()
    path = tmp_path / f"cut.{'safetensors' if layout == 'safetensors' else 'ckpt'}"
    path.write_bytes(content[:len(content) - 40])
    message = _message(path)
    assert "cut short" in message and "Get the file again" in message


def test_a_misnamed_file_is_read_as_what_it_is(tmp_path):
    path = tmp_path / "renamed.safetensors"
    path.write_bytes(_zip_bytes())  # a torch file with the wrong suffix
    assert read_tensor_index(path)["0.weight"].shape == (4, 3, 3, 3)
    assert torch.equal(read_state_dict(path)["1.running_var"], torch.ones(4))


def test_old_torch_storages_and_a_legacy_checkpoint(tmp_path):
    """torch.HalfStorage and friends, as files from before the zip layout name them."""
    path = tmp_path / "old.pt"
    state = {"half": torch.arange(6, dtype=torch.float16).reshape(2, 3), "long": torch.arange(3),
             "bool": torch.tensor([True, False]), "bf16": torch.ones(2, dtype=torch.bfloat16)}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert b"HalfStorage" in path.read_bytes()
    read = read_state_dict(path)
    assert all(read[k].dtype == v.dtype and torch.equal(read[k], v) for k, v in state.items())


@pytest.mark.parametrize("with_estimator", [False, True])
def test_the_same_bad_file_gets_the_same_message_everywhere(tmp_path, with_estimator):
    bad = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    bad.write_text("404: Not Found")
    expected = _message(bad)
    with pytest.raises(Depth2ImgError) as loader:
        estimator_state_from_file(bad)
    assert str(loader.value) == expected
    picture = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(picture)
    result = subprocess.run([sys.executable, "-m", "lib_depth2img", "depth", str(picture), "--weights", str(bad),
                             *(["--estimator", "dpt_hybrid"] if with_estimator else [])],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and result.stderr.strip() == f"error: {expected}"


def _wrap_pickle(payload: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/data/0", bytes(64))
    return buffer.getvalue()


def _read_all(path: Path) -> None:
    """Index the file and read every tensor: only our error may come out."""
    try:
        read_tensor_index(path)
        read_state_dict(path)
    except Depth2ImgError:
        pass


_ZIP, _LEGACY = _zip_bytes(), _legacy_bytes()
_PICKLE = zipfile.ZipFile(io.BytesIO(_ZIP)).read(next(n for n in zipfile.ZipFile(io.BytesIO(_ZIP)).namelist()
                                                      if n.endswith("data.pkl")))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_truncated_and_random_files_raise_only_our_error(tmp_path, data):
    kind = data.draw(st.sampled_from(["pickle in zip", "legacy", "zip", "random", "safetensors header"]))
    if kind == "random":
        content = data.draw(st.binary(max_size=512))
    elif kind == "safetensors header":
        header = data.draw(st.binary(max_size=200))
        content = struct.pack("<Q", len(header)) + b"{" + header
    else:
        base = {"pickle in zip": _PICKLE, "legacy": _LEGACY, "zip": _ZIP}[kind]
        content = bytearray(base[:data.draw(st.integers(1, len(base)))])
        for _ in range(data.draw(st.integers(0, 6))):
            content[data.draw(st.integers(0, len(content) - 1))] = data.draw(st.integers(0, 255))
        content = _wrap_pickle(bytes(content)) if kind == "pickle in zip" else bytes(content)
    path = tmp_path / "fuzzed.ckpt"
    path.write_bytes(content)
    _read_all(path)


def test_the_depth_command_identifies_and_indexes_its_weights_file_once(tiny_estimators, tmp_path, monkeypatch):
    from PIL import Image

    from lib_depth2img import weights_file
    from lib_depth2img.cli import main

    weights = tmp_path / "dpt_hybrid-midas-501f0c75.pt"
    torch.save(tiny_rule_state("dpt_hybrid"), weights)
    Image.new("RGB", (64, 48), (90, 120, 200)).save(tmp_path / "scene.png")
    identified, indexed = [], []
    identify, checkpoint = weights_file.identify_weights_file, weights_file.TorchCheckpoint
    monkeypatch.setattr(weights_file, "identify_weights_file", lambda path: identified.append(path) or identify(path))
    monkeypatch.setattr(weights_file, "TorchCheckpoint", lambda *args: indexed.append(args) or checkpoint(*args))
    assert main(["depth", str(tmp_path / "scene.png"), "--weights", str(weights), "--device", "cpu"]) == 0
    assert (tmp_path / "scene-depth.png").is_file()
    assert len(identified) == 1 and len(indexed) == 1
