"""diffusers depth pipeline folder -> one ``.safetensors`` checkpoint in the layout of ``512-depth-ema`` + its yaml."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from lib_depth2img.conversion.diffusers_folder import LDM_PREFIXES, open_depth_pipeline
from lib_depth2img.conversion.dpt_keys import dpt_to_midas
from lib_depth2img.conversion.ldm_yaml import depth_yaml
from lib_depth2img.conversion.plan import Planned, constant, with_prefix
from lib_depth2img.conversion.schedule import schedule_buffers
from lib_depth2img.conversion.tensor_files import CombinedSource, write_safetensors
from lib_depth2img.conversion.text_keys import text_to_ldm
from lib_depth2img.conversion.unet_keys import unet_to_ldm
from lib_depth2img.conversion.vae_keys import vae_to_ldm
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import create_estimator


def _midas_layout() -> dict[str, tuple[int, ...]]:
    shapes_only = create_estimator("dpt_hybrid", device="meta")  # no memory for weights
    return {k: tuple(v.shape) for k, v in shapes_only.state_dict().items()}


def _in_checkpoint(component: str, plan: list[Planned]) -> list[Planned]:
    return with_prefix(LDM_PREFIXES[component], plan, f"{component}/")  # sources as CombinedSource names them


def diffusers_to_checkpoint(folder: Path, out: Path, half: bool = False, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``out`` (``.safetensors``) and ``out.yaml`` beside it; return both paths."""
    if out.suffix.lower() != ".safetensors":
        raise Depth2ImgError(f"{out}: the checkpoint is written as .safetensors only; name it OUT.safetensors.")
    existing = [path for path in (out, out.with_suffix(".yaml")) if path.exists()]
    if existing and not overwrite:
        raise Depth2ImgError(f"{' and '.join(map(str, existing))} already exist(s); pass --overwrite to replace, "
                             "or choose another name.")
    configs, sources = open_depth_pipeline(folder)
    yaml = depth_yaml(configs["unet"], configs["vae"], configs["text_encoder"], configs["scheduler"])
    source = CombinedSource(sources)
    index = {name: component.index for name, component in sources.items()}
    parts = [
        ("UNet", _in_checkpoint("unet", unet_to_ldm(index["unet"], configs["unet"]))),
        ("VAE", _in_checkpoint("vae", vae_to_ldm(index["vae"], configs["vae"]))),
        ("text encoder", _in_checkpoint("text_encoder", text_to_ldm(index["text_encoder"]))),
        ("depth estimator", _in_checkpoint("depth_estimator", dpt_to_midas(index["depth_estimator"], _midas_layout()))),
        ("noise schedule", [constant(name, value, keep_dtype=True)
                            for name, value in schedule_buffers(yaml["model"]["params"]).items()]),
    ]
    model_dtype = getattr(torch, sources["unet"].index["conv_in.weight"].dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(out, parts, source, torch.float16 if half else model_dtype,
                      metadata={"converted_from": "diffusers StableDiffusionDepth2ImgPipeline"})
    yaml_path = out.with_suffix(".yaml")
    OmegaConf.save(OmegaConf.create(yaml), yaml_path)
    return out, yaml_path
