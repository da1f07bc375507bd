"""``.safetensors`` headers, valid and mutated, read by ours and by the safetensors library itself: the same
files are accepted with the same tensors, and every file the library refuses gets our error.

The deliberate differences, none of which a writer produces: the header may hold 16 MiB, not 100 MB;
a dtype written as a JSON object (``{"F32": null}``, which serde takes for an enum) is refused; and
tensors of the sub-byte types (F4, F6_*) are indexed but not read."""

import json
import struct
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from lib_depth2img import Depth2ImgError
from lib_depth2img.safetensors_header import MAX_HEADER_BYTES
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.weights import estimator_state_from_file, read_state_dict
from lib_depth2img.weights_file import WeightsFile

ITEM_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "C64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
              "BOOL": 1, "U64": 8, "U32": 4, "U16": 2, "F8_E4M3": 1, "F8_E5M2": 1}
MUTATIONS = ["none", "negative start", "into the header", "overlap", "gap", "start after end", "past the end",
             "shape and bytes disagree", "unknown dtype", "dtype is a number", "lowercase dtype", "dtype is null",
             "extra key", "deep extra key", "too deep extra key", "huge number in extra key", "metadata",
             "metadata not strings", "metadata is a list", "trailing byte", "cut short", "minus zero offset",
             "NaN", "repeated field", "repeated tensor", "float offset", "float in shape", "bool in shape",
             "offset past 64 bits", "entry as a list", "lone surrogate", "paired surrogate", "three offsets",
             "leading whitespace", "repeated tensor, the first invalid", "repeated deep key",
             "repeated metadata, the first no string", "flipped byte"]


def _bytes_of(tensor: torch.Tensor) -> bytes:
    """Compared as bytes: random bits make NaNs, which equal nothing."""
    dense = torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor)  # a size-1 view may keep any stride
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


_NEED_NO_TENSOR = ("none", "metadata", "metadata not strings", "metadata is a list", "trailing byte",
                   "leading whitespace", "repeated metadata, the first no string", "flipped byte")


@st.composite
def safetensors_files(draw, mutation: str) -> bytes:
    """A file as the format lays it out (tensors listed in any order, data in offset order), then mutated."""
    count = draw(st.integers(0 if mutation in _NEED_NO_TENSOR else 1, 4))
    names = draw(st.lists(st.text("abcé.", min_size=1, max_size=4), min_size=count, max_size=count, unique=True))
    entries, data = {}, b""
    for name in names:
        dtype = draw(st.sampled_from(sorted(ITEM_BYTES)))
        shape = draw(st.lists(st.integers(0, 3), max_size=3))
        size = ITEM_BYTES[dtype] * int(torch.Size(shape).numel())
        entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + size]}
        data += draw(st.binary(min_size=size, max_size=size))
    listed = draw(st.permutations(names))
    header = {name: entries[name] for name in listed}
    target = header[draw(st.sampled_from(names))] if names else None
    text_edit = None
    if mutation in ("negative start", "into the header"):
        target["data_offsets"][0] = -draw(st.integers(1, 64))
    elif mutation == "overlap":
        target["data_offsets"][0] -= 1
    elif mutation == "gap":
        target["data_offsets"] = [o + 1 for o in target["data_offsets"]]
    elif mutation == "start after end":
        target["data_offsets"].reverse()
    elif mutation == "past the end":
        target["data_offsets"][1] += draw(st.integers(1, 8))
    elif mutation == "shape and bytes disagree":
        target["shape"] = [*target["shape"], 2]
    elif mutation in ("unknown dtype", "dtype is a number", "lowercase dtype", "dtype is null"):
        target["dtype"] = {"unknown dtype": "F33", "dtype is a number": 5, "dtype is null": None,
                           "lowercase dtype": target["dtype"].lower()}[mutation]
    elif mutation == "extra key":
        target["extra"] = draw(st.recursive(st.none() | st.integers(-(2**70), 2**70) | st.text(max_size=3),
                                            lambda inner: st.lists(inner, max_size=2), max_leaves=4))
    elif mutation in ("deep extra key", "too deep extra key"):
        depth = 125 if mutation == "deep extra key" else 126  # with the header and the entry: 127 and 128 deep
        target["extra"] = json.loads("[" * depth + "]" * depth)
    elif mutation == "huge number in extra key":
        text_edit = ('"data_offsets"', '"x": ' + "9" * 400 + ', "data_offsets"')
    elif mutation in ("metadata", "metadata not strings", "metadata is a list"):
        header["__metadata__"] = {"metadata": {"format": "pt"}, "metadata not strings": {"step": 1},
                                  "metadata is a list": ["pt"]}[mutation]
    elif mutation == "trailing byte":
        data += b"\0"
    elif mutation == "cut short":
        data = data[:-1]
    elif mutation == "minus zero offset":
        text_edit = ('"data_offsets": [0,', '"data_offsets": [-0,')
    elif mutation == "NaN":
        text_edit = ('"data_offsets"', '"x": NaN, "data_offsets"')
    elif mutation == "repeated field":
        text_edit = ('"data_offsets"', f'"dtype": {json.dumps(target["dtype"])}, "data_offsets"')
    elif mutation == "repeated tensor":
        text_edit = ("{", '{"' + next(iter(header)) + '": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, ')
    elif mutation == "repeated tensor, the first invalid":
        text_edit = ("{", '{"' + next(iter(header)) + '": {"dtype": 5, "shape": [1], "data_offsets": [0, 1]}, ')
    elif mutation == "repeated deep key":
        text_edit = ('"data_offsets"', '"x": ' + "[" * 126 + "]" * 126 + ', "x": 1, "data_offsets"')
    elif mutation == "repeated metadata, the first no string":
        header["__metadata__"] = {"format": "pt"}
        text_edit = ('"__metadata__": {', '"__metadata__": {"format": 1, ')
    elif mutation == "float offset":
        target["data_offsets"][1] = float(target["data_offsets"][1])
    elif mutation == "float in shape":
        target["shape"] = [float(d) for d in target["shape"]] or [1.0]
    elif mutation == "bool in shape":
        target["shape"] = [True]
    elif mutation == "offset past 64 bits":
        target["data_offsets"][1] = 2**64 + target["data_offsets"][1]
    elif mutation == "entry as a list":
        header[listed[0]] = list(header[listed[0]].values())  # dtype, shape, data_offsets: serde takes a list
    elif mutation in ("lone surrogate", "paired surrogate"):
        text_edit = ('"' + listed[0] + '"', '"' + listed[0] + ("\\ud800" if mutation == "lone surrogate"
                                                               else "\\ud83d\\ude00") + '"')
    elif mutation == "three offsets":
        target["data_offsets"].append(0)
    text = json.dumps(header, ensure_ascii=False)
    if text_edit is not None and text_edit[0] in text:
        text = text.replace(text_edit[0], text_edit[1], 1)
    raw = (draw(st.sampled_from([" ", "\n", "\t\r "])) if mutation == "leading whitespace" else "").encode() + \
        text.encode()
    raw += b" " * draw(st.sampled_from([0, -len(raw) % 8]))  # the library's writer pads to 8 bytes
    if mutation == "flipped byte" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([draw(st.integers(0, 255))]) + raw[at + 1:]
    return struct.pack("<Q", len(raw)) + raw + data


def _library(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        return load_file(str(path))
    except Exception:  # the library's refusal: SafetensorError, or a dtype its torch lacks
        return None


@pytest.mark.parametrize("mutation", MUTATIONS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_same_files_are_accepted_with_the_same_tensors(tmp_path, mutation, data):
    content = data.draw(safetensors_files(mutation))
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    expected = _library(path)
    event(f"{mutation}: {'read' if expected is not None else 'refused'} by the library")
    if expected is None:
        with pytest.raises(Depth2ImgError):
            WeightsFile(path).read(read_tensor_index(path))
        return
    weights = WeightsFile(path)
    assert weights.index.keys() == expected.keys(), mutation
    mapped = weights.read(weights.index)
    for name, tensor in expected.items():
        for got in (mapped[name], weights.tensor(name)):
            assert (got.dtype, got.shape) == (tensor.dtype, tensor.shape), (mutation, name)
            assert _bytes_of(got) == _bytes_of(tensor), (mutation, name)


def _file(tmp_path: Path, header: bytes, data: bytes = b"") -> Path:
    path = tmp_path / "hostile.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)
    return path


def _refused(path: Path) -> str:
    for read in (read_tensor_index, read_state_dict, estimator_state_from_file):
        with pytest.raises(Depth2ImgError) as error:
            read(path)
    return str(error.value)


def test_a_header_nested_200000_deep_gets_our_error(tmp_path):
    message = _refused(_file(tmp_path, b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"))
    assert "nested deeper" in message


def test_a_4300_digit_offset_gets_our_error(tmp_path):
    header = b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,' + b"9" * 4300 + b"]}}"
    assert "not valid JSON (a number is out of range)" in _refused(_file(tmp_path, header, bytes(4)))


def test_a_numeric_dtype_gets_our_error(tmp_path):
    header = b'{"a":{"dtype":5,"shape":[1],"data_offsets":[0,4]}}'
    assert "dtype 5, which is none of the format's" in _refused(_file(tmp_path, header, bytes(4)))


def test_offsets_into_the_header_never_give_its_bytes_as_a_tensor(tmp_path):
    header = b'{"a":{"dtype":"U8","shape":[16],"data_offsets":[-16,0]}}'
    assert "not two non-negative integers" in _refused(_file(tmp_path, header))


@pytest.mark.parametrize(("offsets", "words"), [([[0, 8], [4, 12]], "overlaps the tensor before it"),
                                                ([[0, 8], [9, 17]], "leaves a gap"),
                                                ([[0, 8], [8, 16]], None)])
def test_overlapping_and_gapped_tensors_are_refused(tmp_path, offsets, words):
    header = json.dumps({name: {"dtype": "F32", "shape": [2], "data_offsets": o}
                         for name, o in zip("ab", offsets, strict=True)}).encode()
    path = _file(tmp_path, header, bytes(offsets[-1][1]))
    if words is None:
        assert read_state_dict(path).keys() == {"a", "b"}
    else:
        assert words in _refused(path)


def test_shape_and_bytes_disagreeing_is_said_so(tmp_path):
    path = _file(tmp_path, b'{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', bytes(8))
    assert "has 8 bytes, but its shape [3] of F32 needs 12" in _refused(path)


def test_a_shape_of_a_million_dimensions_is_refused_without_multiplying_it_out(tmp_path):
    header = b'{"a":{"dtype":"U8","shape":[' + b",".join([b"2"] * 1_000_000) + b'],"data_offsets":[0,0]}}'
    assert "too large to be stored" in _refused(_file(tmp_path, header))


def test_a_header_over_the_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big-header.safetensors"
    with path.open("wb") as f:  # sparse: the claimed header is never read
        f.write(struct.pack("<Q", MAX_HEADER_BYTES + 1) + b"{")
        f.truncate(MAX_HEADER_BYTES + 64)
    assert "more than the 16 MiB this reader accepts" in _refused(path)


def test_sub_byte_tensors_are_indexed_but_not_read(tmp_path):
    path = _file(tmp_path, b'{"q":{"dtype":"F4","shape":[4],"data_offsets":[0,2]}}', bytes(2))
    assert read_tensor_index(path)["q"].shape == (4,)
    with pytest.raises(Depth2ImgError, match="F4 tensors, which this reader"):
        read_state_dict(path)


def test_files_the_library_writes_read_alike(tmp_path):
    tensors = {"w": torch.randn(3, 4), "h": torch.randn(5).half(), "i": torch.arange(7), "e": torch.zeros(0, 2),
               "s": torch.tensor(2.5)}
    path = tmp_path / "written.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    read = read_state_dict(path)
    assert all(read[k].dtype == v.dtype and torch.equal(read[k], v) for k, v in tensors.items())


@pytest.mark.skipif(sys.byteorder != "little", reason="the reader refuses big-endian machines")
def test_a_tensor_at_an_odd_offset_reads_right(tmp_path):
    """Offsets the library accepts but its writer never gives: a float32 one byte into the data."""
    header = b'{"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"f":{"dtype":"F32","shape":[1],' \
             b'"data_offsets":[1,5]}}'
    path = _file(tmp_path, header, b"\x07" + struct.pack("<f", 1.5))
    assert read_state_dict(path)["f"].item() == 1.5 == load_file(str(path))["f"].item()
