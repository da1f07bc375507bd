"""Reading a diffusers ``StableDiffusionDepth2ImgPipeline`` folder: its configs and weights files."""

from __future__ import annotations

import json
from pathlib import Path

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX
from lib_depth2img.conversion.tensor_files import WeightsFilesSource
from lib_depth2img.errors import Depth2ImgError

PIPELINE_CLASS = "StableDiffusionDepth2ImgPipeline"
WEIGHTS_STEMS = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model",
                 "depth_estimator": "model"}
LDM_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.",  # where each lives in a checkpoint
                "text_encoder": "cond_stage_model.model.", "depth_estimator": DEPTH_WEIGHTS_PREFIX}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise Depth2ImgError(f"Cannot read {path}: {error}.") from error


def _weights_files(folder: Path, stem: str) -> list[Path] | str:
    """The component's safetensors files (one, or the shards its index names), or why there are none."""
    for variant in ("", ".fp16"):
        single = folder / f"{stem}{variant}.safetensors"
        if single.is_file():
            return [single]
        index = folder / f"{stem}{variant}.safetensors.index.json"
        if index.is_file():
            return sorted({folder / name for name in _read_json(index).get("weight_map", {}).values()})
    if any(folder.glob(f"{stem}*.bin")):
        return (f"{folder.name}/ has only pickled {stem}.bin weights; this converter reads .safetensors. In "
                f"diffusers, pipe.save_pretrained(folder, safe_serialization=True) writes them")
    return f"{folder.name}/ has no {stem}.safetensors"


def open_depth_pipeline(folder: Path) -> tuple[dict[str, dict], dict[str, WeightsFilesSource]]:
    """Configs (with ``scheduler``, empty when absent) and one tensor source per weighted component."""
    if not (folder / "model_index.json").is_file():
        raise Depth2ImgError(f"{folder} has no model_index.json: it is not a diffusers pipeline folder.")
    problems = []
    class_name = _read_json(folder / "model_index.json").get("_class_name")
    if class_name != PIPELINE_CLASS:
        problems.append(f"model_index.json names {class_name}, not {PIPELINE_CLASS}")
    configs, files = {}, {}
    for component, stem in WEIGHTS_STEMS.items():
        config = folder / component / "config.json"
        if not config.is_file():
            problems.append(f"{component}/config.json is missing")
            continue
        configs[component] = _read_json(config)
        found = _weights_files(folder / component, stem)
        if isinstance(found, str):
            problems.append(found)
        else:
            files[component] = found
    in_channels = configs.get("unet", {}).get("in_channels")
    if in_channels not in (None, 5):
        problems.append(f"its UNet takes {in_channels} input channels where a depth UNet takes 5 (latent + depth)")
    if problems:
        raise Depth2ImgError(f"{folder} is not a complete diffusers depth pipeline: {'; '.join(problems)}.")
    scheduler = folder / "scheduler" / "scheduler_config.json"
    configs["scheduler"] = _read_json(scheduler) if scheduler.is_file() else {}
    missing = [str(path) for paths in files.values() for path in paths if not path.is_file()]
    if missing:
        raise Depth2ImgError(f"Weights files named by the shard index are missing: {', '.join(missing)}.")
    return configs, {component: WeightsFilesSource(paths) for component, paths in files.items()}
