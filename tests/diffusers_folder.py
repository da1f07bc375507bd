"""A diffusers depth pipeline folder with random weights in the exact layout of stabilityai/stable-diffusion-2-depth.

Written with safetensors' own writer, so the converter's reader is checked against an independent one.
"""

from __future__ import annotations

import collections
import json
import mmap
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from reference import load_reference
from safetensors.torch import save_file

LAYOUT = load_reference("diffusers-sd2-depth.json")
WEIGHTS_FILES = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
                 "text_encoder": "model.safetensors", "depth_estimator": "model.safetensors"}
SCHEDULER = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012,
             "beta_schedule": "scaled_linear", "num_train_timesteps": 1000, "prediction_type": "epsilon"}

ROOT = Path(__file__).parent.parent
# VmHWM of the converting process itself: Linux carries ru_maxrss over from the forking process
_MEASURED = ("import re, sys; from lib_depth2img.cli import main; code = main(sys.argv[1:]); "
             "print('peak_rss_bytes', 1024 * int(re.search(r'VmHWM:\\s+(\\d+) kB', "
             "open('/proc/self/status').read()).group(1))); sys.exit(code)")


def run_convert(*args) -> tuple[subprocess.CompletedProcess, int | None]:
    """``python -m lib_depth2img convert ARGS`` in its own process, and that process's peak resident bytes."""
    run = subprocess.run([sys.executable, "-c", _MEASURED, "convert", *map(str, args)], cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    peak = run.stdout.split("peak_rss_bytes")[-1].split()
    return run, int(peak[0]) if run.returncode == 0 and peak else None


def random_tensor(shape: list[int], dtype: str, generator: torch.Generator, float_dtype: torch.dtype,
                  std: float = 1.0) -> torch.Tensor:
    if dtype == "int64":  # position_ids: 0..76 in every real file
        return torch.arange(shape[-1]).expand(shape).contiguous()
    return (std * torch.randn(shape, generator=generator, dtype=torch.float32)).to(float_dtype)


def write_depth_pipeline(folder: Path, float_dtype: torch.dtype = torch.float16, seed: int = 0,
                         scheduler: dict | None = None, components: tuple[str, ...] = tuple(WEIGHTS_FILES),
                         std: float = 1.0, depth_estimator: dict[str, torch.Tensor] | None = None) -> Path:
    """``std`` small keeps activations of the random networks sane; ``depth_estimator`` replaces its random weights."""
    generator = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(LAYOUT["model_index"]))
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler or SCHEDULER))
    for name in components:
        component = LAYOUT["components"][name]
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "config.json").write_text(json.dumps(component["config"]))
        tensors = {key: random_tensor(shape, dtype, generator, float_dtype, std)
                   for key, (shape, dtype) in component["tensors"].items()}
        if name == "depth_estimator" and depth_estimator:
            tensors = {key: depth_estimator[key].to(float_dtype).contiguous() for key in tensors}
        save_file(tensors, str(folder / name / WEIGHTS_FILES[name]), metadata={"format": "pt"})
        del tensors
    for name in ("tokenizer", "feature_extractor"):  # weightless parts a base folder carries
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "marker.json").write_text(json.dumps({"from": name}))
    return folder


_SAFETENSORS_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                       "U8": torch.uint8, "BOOL": torch.bool}


class _LettingPagesGo:
    """The file torch.save writes to: after each write the mapped source pages are handed back, so a 2.8 GB
    state dict never sits in memory whole (the pages read so far are the ones already written)."""

    def __init__(self, file, mapped: mmap.mmap):
        self._file, self._mapped = file, mapped

    def write(self, data) -> int:
        written = self._file.write(data)
        self._mapped.madvise(mmap.MADV_DONTNEED)  # a private mapping never written to: the pages just go
        return written

    def flush(self) -> None:
        self._file.flush()


def safetensors_entries(path: Path) -> tuple[int, dict]:
    """Where a safetensors file's data starts, and its tensors' entries (dtype, shape, data_offsets) by name."""
    with open(path, "rb") as file:
        header_size = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_size))
    header.pop("__metadata__", None)
    return 8 + header_size, header


def _element_count(entry: dict) -> int:
    begin, end = entry["data_offsets"]
    return (end - begin) // torch.empty((), dtype=_SAFETENSORS_DTYPES[entry["dtype"]]).element_size()


class read_all(Mapping):  # noqa: N801 (used as the function it replaced)
    """A safetensors file's tensors, each read from the file when it is looked up. Plain reads, not the
    library's memory map: a mapping's pages count as the process's memory once touched, so comparing two
    1.7 GB UNets through ``safe_open`` took a test process to 4.9 GB."""

    def __init__(self, path: Path):
        self._path = path
        self._start, self._entries = safetensors_entries(path)

    def __getitem__(self, key: str) -> torch.Tensor:
        entry = self._entries[key]
        with open(self._path, "rb") as file:
            file.seek(self._start + entry["data_offsets"][0])
            data = bytearray(file.read(entry["data_offsets"][1] - entry["data_offsets"][0]))
        return torch.frombuffer(data, dtype=_SAFETENSORS_DTYPES[entry["dtype"]],
                                count=_element_count(entry)).reshape(entry["shape"])

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def write_depth_pipeline_apart(folder: Path) -> Path:
    """``write_depth_pipeline(folder)`` in a process of its own: the whole 1.7 GB UNet is in memory while
    safetensors writes it, and a test process that held it would pass the 3 GB rule in a busy xdist worker."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from diffusers_folder import write_depth_pipeline; write_depth_pipeline(Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), str(folder)], check=True, timeout=900)
    return folder


def save_lightning_checkpoint(source: Path, path: Path) -> None:
    """``torch.save`` of a Lightning checkpoint (``state_dict`` with its ``_metadata``, ``global_step``,
    ``callbacks``) holding every tensor of the safetensors file ``source``: one storage per tensor, as
    ``state_dict()`` gives them, each a view of the file mapped into memory instead of a copy of it."""
    start, entries = safetensors_entries(source)
    with open(source, "rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_COPY)
    state_dict = collections.OrderedDict(
        (key, torch.frombuffer(mapped, dtype=_SAFETENSORS_DTYPES[entry["dtype"]], count=_element_count(entry),
                               offset=start + entry["data_offsets"][0]).reshape(entry["shape"]))
        for key, entry in entries.items())
    state_dict._metadata = collections.OrderedDict({"": {"version": 1}})
    with open(path, "wb") as file:
        torch.save({"state_dict": state_dict, "global_step": 0, "callbacks": {"ModelCheckpoint": {}}},
                   _LettingPagesGo(file, mapped))
