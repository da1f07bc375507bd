"""PyTorch files, as ``torch.save`` writes them and as a hostile hand writes them, read by ours and by
``torch.load(weights_only=True)``: what ours reads, torch reads alike; what torch refuses, ours refuses
with our error; and nothing the pickle names is imported or run.

The deliberate differences: ours reads Lightning checkpoints whose hyper-parameters name classes (which
weights_only refuses), and refuses what torch accepts but no weights file holds and a hostile one could
use: a tensor claiming more elements than its storage has (stride 0: a few bytes claiming terabytes) or
more than 64 dimensions, a BUILD that rewrites a tensor, data members compressed in the archive, a pickle
or a zip directory over 8 MiB, and a legacy view reaching past its storage. Quantized, sparse and nested
tensors are left out of the index. Ours reads every file on the CPU, whatever device it names."""

import collections
import contextlib
import io
import math
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lib_depth2img import Depth2ImgError
from lib_depth2img.checkpoint import inspect_checkpoint
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.torch_pickle import MAX_PICKLE_BYTES, unwrap_state_dict
from lib_depth2img.weights import read_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_CLASSES = {torch.float32: torch.FloatStorage, torch.float16: torch.HalfStorage,
                   torch.bfloat16: torch.BFloat16Storage, torch.float64: torch.DoubleStorage,
                   torch.int64: torch.LongStorage, torch.uint8: torch.ByteStorage, torch.bool: torch.BoolStorage}


class Storage:
    """A storage as a pickle refers to it: by a persistent id, its bytes stored beside the pickle."""

    def __init__(self, key: str, dtype: torch.dtype, data: bytes, view: tuple | None = None, untyped=False):
        self.key, self.dtype, self.data, self.view, self.untyped = key, dtype, data, view, untyped

    @property
    def numel(self) -> int:
        return len(self.data) // (1 if self.untyped else self.dtype.itemsize)


class Record:
    """A tensor as torch pickles it: a call of one of torch's rebuild functions."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        hooks = collections.OrderedDict()
        if self.storage.untyped:
            return (torch._utils._rebuild_tensor_v3,
                    (self.storage, self.offset, self.size, self.stride, False, hooks, self.storage.dtype))
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, self.size, self.stride, False, hooks)


class Writer(pickle.Pickler):
    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        kind = torch.UntypedStorage if obj.untyped else STORAGE_CLASSES[obj.dtype]
        pid = ("storage", kind, obj.key, "cpu", obj.numel)
        return (*pid, obj.view) if self.legacy else pid


def write_zip(path: Path, obj, storages: list[Storage], pickled: bytes | None = None) -> Path:
    buffer = io.BytesIO()
    Writer(buffer, legacy=False).dump(obj)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue() if pickled is None else pickled)
        archive.writestr("archive/byteorder", "little")
        for storage in storages:
            archive.writestr(f"archive/data/{storage.key}", storage.data)
        archive.writestr("archive/version", "3\n")
    return path


def write_legacy(path: Path, obj, storages: list[Storage]) -> Path:
    with path.open("wb") as f:
        for value in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(value, f, protocol=2)
        Writer(f, legacy=True).dump(obj)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for storage in storages:
            f.write(struct.pack("<q", storage.numel) + storage.data)
    return path


def _bytes_of(tensor: torch.Tensor) -> bytes:
    """Compared as bytes: random bits make NaNs, which equal nothing."""
    dense = torch.empty(tensor.shape, dtype=tensor.dtype).copy_(tensor)  # a size-1 view may keep any stride
    return dense.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""


def _torch_reads(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        state = unwrap_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
    except Exception:  # torch's refusal, whichever its type
        return None
    return {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}


def _compare(path: Path, deliberate: str | None = None) -> str:
    """Ours against torch's loader; ``deliberate`` names why ours may refuse what torch reads."""
    expected = _torch_reads(path)
    try:
        ours = read_state_dict(path)
    except Depth2ImgError as error:
        assert expected is None or deliberate is not None, f"torch reads it, ours says: {error}"
        return "refused by ours" + ("" if expected is None else f" ({deliberate})")
    assert expected is not None, "ours reads a file torch refuses"
    assert ours.keys() == expected.keys()
    for name, tensor in expected.items():
        got = ours[name]
        assert (got.dtype, got.shape) == (tensor.dtype, tensor.shape), name
        assert _bytes_of(got) == _bytes_of(tensor), name
    return "read alike"


@st.composite
def state_dicts(draw) -> tuple[dict[str, torch.Tensor], bool]:
    """Small state dicts as modules give them, with views and slices that share a storage."""
    tensors = {}
    for index in range(draw(st.integers(1, 4))):
        dtype = draw(st.sampled_from(sorted(STORAGE_CLASSES, key=str)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        base = (torch.rand(shape) * 100).to(dtype)
        tensors[f"layer{index}.weight"] = base
        view = draw(st.sampled_from(["none", "slice", "every other", "transpose", "row"]))
        if view != "none" and base.dim() and base.shape[0] > 1:
            tensors[f"layer{index}.view"] = {"slice": base[1:], "every other": base[::2], "row": base[1],
                                             "transpose": base.transpose(0, -1)}[view]
    return tensors, draw(st.booleans())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=state_dicts())
def test_state_dicts_torch_saves_read_as_torch_reads_them(tmp_path, case):
    tensors, legacy = case
    path = tmp_path / "saved.pt"
    torch.save(collections.OrderedDict(tensors), path, _use_new_zipfile_serialization=not legacy)
    assert _compare(path) == "read alike"


@st.composite
def hand_written(draw) -> tuple[bool, dict, list[Storage], str | None]:
    """Records with any offsets, shapes and strides over stored storages, some as legacy views; and why ours
    may refuse the file where torch reads it."""
    legacy = draw(st.booleans())
    storages, records, deliberate = [], {}, None
    for index in range(draw(st.integers(1, 2))):
        dtype = draw(st.sampled_from(sorted(STORAGE_CLASSES, key=str)))
        untyped = not legacy and draw(st.booleans())  # _rebuild_tensor_v3 over an UntypedStorage
        size = draw(st.integers(0, 12)) * dtype.itemsize
        storages.append(Storage(str(index), dtype, draw(st.binary(min_size=size, max_size=size)), untyped=untyped))
    for index in range(draw(st.integers(1, 3))):
        storage = draw(st.sampled_from(storages))
        available = len(storage.data) // storage.dtype.itemsize
        if legacy and draw(st.booleans()):
            view = (f"view{index}", draw(st.integers(0, 6)), draw(st.integers(0, 6)))
            if view[1] + view[2] > available:
                deliberate = "a view reaching past its storage"
            storage, available = Storage(storage.key, storage.dtype, storage.data, view), view[2]
        dims = draw(st.integers(0, 3))
        size = tuple(draw(st.lists(st.integers(0, 4), min_size=dims, max_size=dims)))
        stride = tuple(draw(st.lists(st.integers(0, 5), min_size=dims, max_size=dims)))
        if math.prod(size) > available:
            deliberate = deliberate or "more elements than its storage"
        records[f"t{index}"] = Record(storage, draw(st.integers(0, 12)), size, stride)
    return legacy, records, storages, deliberate


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=hand_written())
def test_hand_written_records_read_as_torch_reads_them_or_get_our_error(tmp_path, case):
    legacy, records, storages, deliberate = case
    path = (write_legacy if legacy else write_zip)(tmp_path / "hand.pt", records, storages)
    event(_compare(path, deliberate))


def test_a_legacy_view_at_an_offset_reads_from_that_offset(tmp_path):
    storage = Storage("0", torch.float32, struct.pack("<8f", *range(8)))
    path = write_legacy(tmp_path / "view.pt", {"w": Record(Storage("0", torch.float32, storage.data, ("v", 2, 4)),
                                                             0, (4,), (1,))}, [storage])
    assert read_state_dict(path)["w"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert _compare(path) == "read alike"


@pytest.mark.parametrize("legacy", [False, True])
def test_a_record_reaching_past_its_storage_gets_our_error(tmp_path, legacy):
    storage = Storage("0", torch.float32, bytes(16))
    path = (write_legacy if legacy else write_zip)(tmp_path / "past.pt", {"w": Record(storage, 2, (4,), (1,))},
                                                   [storage])
    with pytest.raises(Depth2ImgError, match="reaches past the 4 elements of its storage"):
        read_tensor_index(path)
    assert _torch_reads(path) is None


def test_a_record_of_a_thousand_dimensions_gets_our_error(tmp_path):
    storage = Storage("0", torch.uint8, bytes(1))
    path = write_zip(tmp_path / "dims.pt", {"w": Record(storage, 0, (1,) * 1000, (1,) * 1000)}, [storage])
    with pytest.raises(Depth2ImgError, match="up to 64 non-negative"):
        read_tensor_index(path)


class RewrittenRecord(Record):
    """A record followed by a BUILD: ``{"info": 5}`` set on the tensor just made."""

    def __reduce__(self):
        return (*super().__reduce__(), {"info": 5})


def test_a_build_that_rewrites_a_tensor_record_gets_our_error(tmp_path):
    unet = "model.diffusion_model.input_blocks.0.0.weight"
    storage = Storage("0", torch.float32, bytes(4 * 320 * 5 * 9))
    record = RewrittenRecord(storage, 0, (320, 5, 3, 3), (45, 9, 3, 1))
    path = write_zip(tmp_path / "build.ckpt", {"state_dict": {unet: record}}, [storage])
    assert pickle.BUILD in zipfile.ZipFile(path).read("archive/data.pkl")
    with pytest.raises(Depth2ImgError, match="rewrites a tensor record"):
        inspect_checkpoint(path)


def _global_call(module: str, name: str, *args: bytes) -> bytes:
    """A protocol-2 pickle of {"state_dict": {"x": module.name(*args)}}: a lookup by name, then a call."""
    return (b"\x80\x02}X\n\x00\x00\x00state_dict}X\x01\x00\x00\x00x" + f"c{module}\n{name}\n".encode()
            + b"(" + b"".join(args) + b"tRss.")


CALLS = []


def record_call(*args):
    CALLS.append(args)
    return args


@pytest.mark.parametrize(("module", "name"), [("torch", "_inductor"), ("torch", "has_cudnn"), ("torch", "load"),
                                              ("os", "system"), ("builtins", "eval"), ("torch.nn", "Module"),
                                              ("torch._dynamo", "reset"), ("importlib", "import_module"),
                                              ("torch", "float32"), ("torch._utils", "_rebuild_tensor_v2"),
                                              (__name__, "record_call")])
def test_a_name_in_the_pickle_imports_nothing_and_runs_nothing(tmp_path, module, name):
    path = write_zip(tmp_path / "names.ckpt", None, [], _global_call(module, name, b"X\x04\x00\x00\x00echo"))
    before = set(sys.modules)
    with contextlib.suppress(Depth2ImgError):  # a rebuild function given nonsense is refused, which is fine
        assert read_tensor_index(path) == {}
    assert set(sys.modules) == before and not CALLS


def _zip_with_member(path: Path, compression: int, pickled: bytes, padding: int) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("archive/data.pkl")
        info.compress_type = compression
        with archive.open(info, "w", force_zip64=True) as member:
            member.write(pickled)
            for _ in range(padding // 2**20):
                member.write(bytes(2**20))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/data/0", struct.pack("<4f", 0, 1, 2, 3))
    return path


def _small_pickle() -> bytes:
    buffer = io.BytesIO()
    Writer(buffer, legacy=False).dump({"x": Record(Storage("0", torch.float32, bytes(16)), 0, (4,), (1,))})
    return buffer.getvalue()


@pytest.mark.parametrize(("compression", "words"), [(zipfile.ZIP_BZIP2, "bzip2 or lzma"),
                                                    (zipfile.ZIP_LZMA, "bzip2 or lzma"),
                                                    (zipfile.ZIP_DEFLATED, "8 MiB"), (zipfile.ZIP_STORED, "8 MiB")])
def test_a_data_pkl_bomb_is_refused(tmp_path, compression, words):
    """A valid pickle followed by 16 MiB of zeros that no unpickler reads: compressed, a few KB."""
    path = _zip_with_member(tmp_path / "bomb.ckpt", compression, _small_pickle(), 2 * MAX_PICKLE_BYTES)
    with pytest.raises(Depth2ImgError, match="made to exhaust memory") as error:
        inspect_checkpoint(path)
    assert words in str(error.value)


def test_a_deflated_data_pkl_within_the_limit_reads_as_torch_reads_it(tmp_path):
    path = _zip_with_member(tmp_path / "deflated.ckpt", zipfile.ZIP_DEFLATED, _small_pickle(), 0)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/version", "3\n")
    assert read_state_dict(path)["x"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert _compare(path) == "read alike"


def test_a_legacy_pickle_over_the_limit_is_refused(tmp_path):
    storage = Storage("0", torch.float32, bytes(4))
    path = write_legacy(tmp_path / "long.pt", {"w": Record(storage, 0, (1,), (1,)), "pad": "x" * MAX_PICKLE_BYTES},
                        [storage])
    with pytest.raises(Depth2ImgError, match="goes on past"):
        read_tensor_index(path)


def test_a_storage_claiming_more_than_its_member_holds_is_refused(tmp_path):
    storage = Storage("0", torch.float32, bytes(16))
    claimed = Storage("0", torch.float32, bytes(2**20))  # the pickle says 1 MiB, the member holds 16 bytes
    buffer = io.BytesIO()
    Writer(buffer, legacy=False).dump({"w": Record(claimed, 0, (4,), (1,))})
    path = write_zip(tmp_path / "claims.pt", None, [storage], buffer.getvalue())
    with pytest.raises(Depth2ImgError, match="holds 16 bytes, fewer than its tensors need"):
        read_tensor_index(path)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the memory cap is read from Linux's /proc")
def test_a_ten_byte_pickle_naming_a_huge_memo_index_reads_within_a_small_memory_cap(tmp_path):
    """LONG_BINPUT 2**28: the C unpickler grows its memo to 2**29 slots (4 GiB) for it."""
    path = write_zip(tmp_path / "memo.ckpt", None, [], b"\x80\x02Nr" + struct.pack("<I", 2**28) + b".")
    code = (f"import resource, sys; sys.path.insert(0, {str(Path(__file__).parent.parent)!r})\n"
            "from lib_depth2img.tensor_index import read_tensor_index\n"
            "size = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmSize')) * 1024\n"
            "resource.setrlimit(resource.RLIMIT_AS, (size + 256 * 2**20, resource.RLIM_INFINITY))\n"
            f"print(read_tensor_index({str(path)!r}))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "{}", run.stderr[-500:]


def test_a_zip_directory_over_the_limit_is_refused_before_it_is_read(tmp_path):
    storage = Storage("0", torch.float32, bytes(16))
    path = write_zip(tmp_path / "directory.pt", {"w": Record(storage, 0, (4,), (1,))}, [storage])
    content = bytearray(path.read_bytes())
    end = content.rfind(b"PK\x05\x06")  # the end record: the directory's size at +12
    content[end + 12:end + 16] = struct.pack("<I", MAX_PICKLE_BYTES + 1)
    path.write_bytes(content)
    with pytest.raises(Depth2ImgError, match="zip directory claims 8,388,609 bytes"):
        read_tensor_index(path)
