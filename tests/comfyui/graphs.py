"""API-format prompts for the tests: the plain ComfyUI graphs, and edits to the pack's example workflows."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from comfyui_server import CHECKPOINT

PROMPT = "a house by a lake"


def plain_txt2img(size: int = 64, seed: int = 1234, steps: int = 2) -> dict:
    """ComfyUI's default graph: checkpoint, two prompts, an empty latent, KSampler, decode, save."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": PROMPT, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "seed": seed, "steps": steps, "cfg": 5.0,
                                                   "sampler_name": "euler", "scheduler": "normal",
                                                   "positive": ["6", 0], "negative": ["7", 0],
                                                   "latent_image": ["5", 0], "denoise": 1.0}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "plain"}},
    }


def inpaint_model_conditioning(picture: str) -> dict:
    """ComfyUI's own inpaint-model path (InpaintModelConditioning) on a loaded picture and its mask."""
    prompt = plain_txt2img()
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": picture}}
    prompt["11"] = {"class_type": "InpaintModelConditioning",
                    "inputs": {"positive": ["6", 0], "negative": ["7", 0], "vae": ["4", 2], "pixels": ["10", 0],
                               "mask": ["10", 1], "noise_mask": True}}
    prompt["3"]["inputs"].update(positive=["11", 0], negative=["11", 1], latent_image=["11", 2])
    return prompt


def load_workflow(pack: Path, name: str) -> dict:
    return json.loads((pack / "workflows" / f"{name}_api.json").read_text())


def of_class(prompt: dict, class_type: str) -> list[str]:
    return sorted(node for node, data in prompt.items() if data["class_type"] == class_type)


def with_probes(prompt: dict, run: str) -> tuple[dict, dict[str, str]]:
    """The prompt with a Depth2ImgTestProbe before each KSampler's model; KSampler id -> probe file name."""
    prompt = copy.deepcopy(prompt)
    names = {}
    for sampler in of_class(prompt, "KSampler"):
        names[sampler] = f"{run}-{sampler}"
        probe = f"probe{sampler}"
        prompt[probe] = {"class_type": "Depth2ImgTestProbe",
                         "inputs": {"model": prompt[sampler]["inputs"]["model"], "name": names[sampler]}}
        prompt[sampler]["inputs"]["model"] = [probe, 0]
    return prompt, names


def quick(prompt: dict, size: int, steps: int = 2, seed: int = 1234) -> dict:
    """The same graph with few sampling steps, a fixed seed, and empty latents of the example pictures' size
    (upscales to twice that), so that it runs in seconds on a CPU."""
    prompt = copy.deepcopy(prompt)
    for sampler in of_class(prompt, "KSampler"):
        prompt[sampler]["inputs"].update(steps=steps, seed=seed)
    for latent in of_class(prompt, "EmptyLatentImage"):
        prompt[latent]["inputs"].update(width=size, height=size)
    for upscale in of_class(prompt, "LatentUpscale"):
        prompt[upscale]["inputs"].update(width=2 * size, height=2 * size)
    return prompt


def output_nodes(prompt: dict) -> list[str]:
    return of_class(prompt, "SaveImage") + of_class(prompt, "PreviewImage")
