"""Single-file depth checkpoint (+ its yaml) -> diffusers ``StableDiffusionDepth2ImgPipeline`` folder.

The tokenizer and the depth estimator's image processor hold no trained weights; they are
copied from ``base`` (the diffusers folder the model came from) when one is given.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lib_depth2img.checkpoint import UNET_INPUT_KEY, inspect_checkpoint, yaml_path_for
from lib_depth2img.conversion.diffusers_configs import diffusers_configs
from lib_depth2img.conversion.diffusers_folder import LDM_PREFIXES, WEIGHTS_STEMS
from lib_depth2img.conversion.dpt_keys import dpt_to_transformers
from lib_depth2img.conversion.ldm_yaml import SD2_DEPTH, depth_yaml
from lib_depth2img.conversion.plan import with_prefix
from lib_depth2img.conversion.tensor_files import SafetensorsSource, StateDictSource, write_safetensors
from lib_depth2img.conversion.text_keys import text_to_diffusers
from lib_depth2img.conversion.unet_keys import unet_to_diffusers
from lib_depth2img.conversion.vae_keys import vae_to_diffusers
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.weights import read_state_dict

WEIGHTLESS = ("tokenizer", "feature_extractor")


def _checkpoint_source(checkpoint: Path):
    info = inspect_checkpoint(checkpoint)
    if not info.is_depth:
        raise Depth2ImgError(f"{checkpoint} is not a depth model: {info.reason}")
    if info.has_depth_weights is False or info.estimator != "dpt_hybrid":
        raise Depth2ImgError(f"{checkpoint} carries no DPT-Hybrid weights, which a diffusers depth pipeline needs.")
    if checkpoint.suffix.lower() == ".safetensors":
        return SafetensorsSource([checkpoint])
    return StateDictSource(read_state_dict(checkpoint))  # memory-mapped where the file allows


def checkpoint_to_diffusers(checkpoint: Path, out: Path, half: bool = False, base: Path | None = None) -> Path:
    if out.exists() and any(out.iterdir()):
        raise Depth2ImgError(f"{out} is not empty; pick a new folder so that nothing in it is overwritten.")
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
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        for part, plan in plans.items():
            (out / part).mkdir(exist_ok=True)
            write_safetensors(out / part / f"{WEIGHTS_STEMS[part]}.safetensors",
                              [(part, with_prefix("", plan, LDM_PREFIXES[part]))], source, dtype)
            _write_json(out / part / "config.json", configs[part])
        _write_json(out / "scheduler" / "scheduler_config.json", configs["scheduler"])
        _write_json(out / "model_index.json", configs["model_index"])
        for name in WEIGHTLESS if base else ():
            shutil.copytree(base / name, out / name)
    except BaseException:  # an interrupted conversion leaves no half folder to mistake for a model
        for child in out.iterdir():  # the folder was empty: all in it is ours
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        if created:
            out.rmdir()
        raise
    return out


def _write_json(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")
