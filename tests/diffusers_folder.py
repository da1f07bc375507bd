"""A diffusers depth pipeline folder with random weights in the exact layout of stabilityai/stable-diffusion-2-depth.

Written with safetensors' own writer, so the converter's reader is checked against an independent one.
"""

from __future__ import annotations

import json
import subprocess
import sys
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
