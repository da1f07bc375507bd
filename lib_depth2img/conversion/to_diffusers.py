"""Single-file depth checkpoint (+ its yaml) -> diffusers ``StableDiffusionDepth2ImgPipeline`` folder.

The tokenizer and the depth estimator's image processor hold no trained weights; they are
copied from ``base`` (the diffusers folder the model came from) when one is given.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lib_depth2img.checkpoint import UNET_INPUT_KEY, inspect_checkpoint, yaml_path_for
from lib_depth2img.conversion.diffusers_configs import diffusers_configs
from lib_depth2img.conversion.diffusers_folder import LDM_PREFIXES, WEIGHTS_STEMS
from lib_depth2img.conversion.dpt_keys import dpt_to_transformers
from lib_depth2img.conversion.ldm_yaml import SD2_DEPTH, depth_yaml
from lib_depth2img.conversion.plan import with_prefix
from lib_depth2img.conversion.tensor_files import WeightsFilesSource, write_safetensors
from lib_depth2img.conversion.text_keys import text_to_diffusers
from lib_depth2img.conversion.unet_keys import unet_to_diffusers
from lib_depth2img.conversion.vae_keys import vae_to_diffusers
from lib_depth2img.errors import Depth2ImgError

WEIGHTLESS = ("tokenizer", "feature_extractor")


def _checkpoint_source(checkpoint: Path):
    info = inspect_checkpoint(checkpoint)
    if not info.is_depth:
        raise Depth2ImgError(f"{checkpoint} is not a depth model: {info.reason}")
    if info.has_depth_weights is False or info.estimator != "dpt_hybrid":
        raise Depth2ImgError(f"{checkpoint} carries no DPT-Hybrid weights, which a diffusers depth pipeline needs.")
    return WeightsFilesSource([checkpoint])


def checkpoint_to_diffusers(checkpoint: Path, out: Path, half: bool = False, base: Path | None = None,
                            overwrite: bool = False) -> Path:
    if out.is_symlink():  # the model would be written wherever the link points
        raise Depth2ImgError(f"{out} is a symbolic link; name a real folder (or a new one) for the diffusers model.")
    if out.exists() and not out.is_dir():
        raise Depth2ImgError(f"{out} is a file; name a folder for the diffusers model.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise Depth2ImgError(f"{out} is not empty; pick a new folder, or pass --overwrite to replace the model files "
                             "in it (other files there are kept).")
    missing_base = [name for name in WEIGHTLESS if base and not (base / name).is_dir()]
    if missing_base:
        raise Depth2ImgError(f"{base} has no {' or '.join(missing_base)} folder to copy.")
    source = _checkpoint_source(checkpoint)
    yaml_path = yaml_path_for(checkpoint)
    yaml = OmegaConf.to_container(OmegaConf.load(yaml_path), resolve=True) if yaml_path.is_file() \
        else depth_yaml(**SD2_DEPTH)
    model_dtype = getattr(torch, source.index[UNET_INPUT_KEY].dtype)
    dtype = torch.float16 if half else model_dtype
    configs = diffusers_configs(yaml, str(dtype).removeprefix("torch."))
    index = {part: {k[len(prefix):]: v for k, v in source.index.items() if k.startswith(prefix)}
             for part, prefix in LDM_PREFIXES.items()}
    empty = [f"{part} ({LDM_PREFIXES[part]}*)" for part, tensors in index.items() if not tensors]
    if empty:
        raise Depth2ImgError(f"{checkpoint} has no weights for: {', '.join(empty)}; "
                             "a diffusers pipeline needs all four.")
    plans = {"unet": unet_to_diffusers(index["unet"], configs["unet"]),
             "vae": vae_to_diffusers(index["vae"], configs["vae"]),
             "text_encoder": text_to_diffusers(index["text_encoder"]),
             "depth_estimator": dpt_to_transformers(index["depth_estimator"])}
    # Written beside the target and moved in whole: an interrupted conversion leaves the folder as it was.
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        for part, plan in plans.items():
            (partial / part).mkdir()
            write_safetensors(partial / part / f"{WEIGHTS_STEMS[part]}.safetensors",
                              [(part, with_prefix("", plan, LDM_PREFIXES[part]))], source, dtype)
            _write_json(partial / part / "config.json", configs[part])
        _write_json(partial / "scheduler" / "scheduler_config.json", configs["scheduler"])
        _write_json(partial / "model_index.json", configs["model_index"])
        for name in WEIGHTLESS if base else ():
            shutil.copytree(base / name, partial / name)
        out.mkdir(exist_ok=True)
        for child in partial.iterdir():
            target = out / child.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            child.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
