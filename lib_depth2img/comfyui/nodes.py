"""The nodes: ComfyUI's types in, the core's functions called, ComfyUI's types out.

IMAGE is ``[B,H,W,C]`` in [0, 1]; MASK ``[B,H,W]``; LATENT a dict whose ``samples`` are ``[B,4,H/8,W/8]``;
CONDITIONING a list of ``[tensor, options]``. A depth checkpoint's UNet takes a fifth input channel, which
ComfyUI fills from the options key ``noise_concat`` when it is there (``BaseModel.extra_conds``), and
otherwise with an inpainting model's mask and masked picture: 9 channels, the "expected input[2, 9, ...] to
have 5 channels" error.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import comfy.model_management as model_management
import folder_paths
import node_helpers
import torch

from lib_depth2img.adjustments import ADJUSTMENT_BOUNDS, DepthAdjustments
from lib_depth2img.comfyui import host
from lib_depth2img.depth_image import depth_levels
from lib_depth2img.depth_source import CHECKPOINT_SOURCE
from lib_depth2img.estimators import ESTIMATORS
from lib_depth2img.generation_args import EXTRA_ESTIMATORS, setting_metadata
from lib_depth2img.picture_files import PICTURE_SUFFIXES
from lib_depth2img.pipeline import condition_latent_batch, depth_of_pictures
from lib_depth2img.user_depth import read_depth_map

CATEGORY = "depth2img (SD2 depth)"
CONDITIONING_KEY = "noise_concat"  # BaseModel.extra_conds: replaces the concat a >4-channel model builds
DEPTH_TOOLTIP = "Depth, white = near: one float map per picture, or one for all."
DEPTH_IMAGE_TOOLTIP = "The depth as a grey picture to look at (white = near)."


def _as_outputs(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth ``[B,1,H,W]`` in [0, 1] -> (IMAGE ``[B,H,W,3]``, MASK ``[B,H,W]``)."""
    levels = levels.to(model_management.intermediate_device())
    return levels.movedim(1, -1).expand(-1, -1, -1, 3).contiguous(), levels[:, 0]


def _adjustment_input(name: str) -> tuple[str, dict]:
    low, high, step = ADJUSTMENT_BOUNDS[name]
    default = getattr(DepthAdjustments(), name)
    return "FLOAT", {"default": default, "min": low, "max": high, "step": step,
                     "tooltip": setting_metadata(name)["help"]}


def _estimator_help() -> str:
    others = " ".join(f"{name}: {ESTIMATORS[name].description}" + (" Non-commercial licence."
                                                                   if ESTIMATORS[name].non_commercial else "")
                      for name in EXTRA_ESTIMATORS)
    folders = ", ".join(sorted({f"models/{ESTIMATORS[name].folders[0]}" for name in EXTRA_ESTIMATORS}))
    return (f"{CHECKPOINT_SOURCE}: the MiDaS that the checkpoint below carries (what SD2 depth was trained with), "
            f"read from its file. The others need their release file in {folders} (or a folder of that name in "
            f"extra_model_paths.yaml): {others}")


class Depth2ImgEstimate:
    DESCRIPTION = ("Depth of each picture, by the SD2 depth checkpoint's own MiDaS or another estimator. Feed its "
                   "depth to 'Depth conditioning'. The depth is at the estimator's resolution; the conditioning "
                   "resizes it once, straight to the latent size, as in training.")
    CATEGORY = CATEGORY
    FUNCTION = "estimate"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("depth_image", "depth")
    OUTPUT_TOOLTIPS = (DEPTH_IMAGE_TOOLTIP, "The depth to pass on to 'Depth conditioning': one float map per "
                       "picture in [0, 1], white = near.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The pictures to estimate depth from (a batch: each its own depth). "
                                           "Repeated pictures are taken from a cache."}),
            "estimator": ([CHECKPOINT_SOURCE, *EXTRA_ESTIMATORS], {"default": CHECKPOINT_SOURCE,
                                                                   "tooltip": _estimator_help()}),
            "ckpt_name": (host.checkpoint_names(), {"tooltip": "The SD2 depth checkpoint (such as "
                                                               "512-depth-ema) whose own MiDaS estimates the depth "
                                                               "when the estimator is 'checkpoint'."}),
            "invert": ("BOOLEAN", {"default": DepthAdjustments().invert,
                                   "tooltip": setting_metadata("invert")["help"]}),
            "near": _adjustment_input("near"),
            "far": _adjustment_input("far"),
            "gamma": _adjustment_input("gamma"),
            "blur": _adjustment_input("blur"),
        }}

    def estimate(self, image, estimator, ckpt_name, invert, near, far, gamma, blur):
        adjustments = DepthAdjustments(invert, near, far, gamma, blur)  # checked before anything loads
        pictures = image[..., :3].movedim(-1, 1)
        with host.estimator(estimator, ckpt_name) as network:
            depth = depth_of_pictures(network, pictures, adjustments=adjustments, cache=host.DEPTH_CACHE)
        return _as_outputs(depth_levels(depth))  # each map stretched over [0, 1]: a MASK's range


def _input_files() -> list[str]:
    folder = Path(folder_paths.get_input_directory())
    return sorted(path.name for path in folder.iterdir() if path.is_file() and path.suffix.lower() in PICTURE_SUFFIXES)


class Depth2ImgLoadDepthMap:
    DESCRIPTION = ("A depth map from a file (Blender, a phone, another tool), white = near, kept at full "
                   "precision: 16-bit PNG and TIFF keep all 65536 levels (ComfyUI's Load Image keeps 8 bits).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("depth_image", "depth")
    OUTPUT_TOOLTIPS = (DEPTH_IMAGE_TOOLTIP, "The map as floats in [0, 1] (white = near), for 'Depth conditioning'.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_files(), {"image_upload": True, "tooltip": (
            "A depth map in ComfyUI's input folder: PNG, JPEG, WebP, TIFF or BMP; 8 or 16 bits; grey or colour "
            "(read by luminance).")})}}

    def load(self, image):
        # The file's own levels, not stretched: the WebUI conditions on these, and the rule's + 0.001 makes a map
        # of narrow range a shallow conditioning there too (same map, same conditioning in both hosts).
        return _as_outputs(read_depth_map(Path(folder_paths.get_annotated_filepath(image))))

    # No VALIDATE_INPUTS, unlike Load Image: ComfyUI then checks the name against the list above, so a name sent
    # to /prompt is never a path out of the input folder.
    @classmethod
    def IS_CHANGED(cls, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()


class Depth2ImgConditioning:
    DESCRIPTION = ("Puts the depth on the positive AND the negative conditioning for an SD2 depth checkpoint, by "
                   "the rule it was trained with, at the latent's size, one map per picture. Without it a depth "
                   "checkpoint fails at the first step with 'expected input[2, 9, ...] to have 5 channels, but got "
                   "9 channels instead'. For a second pass after an upscale, use it again with the upscaled latent "
                   "and the same depth.")
    CATEGORY = CATEGORY
    FUNCTION = "condition"
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING")
    RETURN_NAMES = ("positive", "negative")
    OUTPUT_TOOLTIPS = ("The positive conditioning carrying the depth: to the KSampler's positive.",
                       "The negative conditioning carrying the depth: to the KSampler's negative (both sides need "
                       "it).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "positive": ("CONDITIONING", {"tooltip": "The prompt's conditioning."}),
            "negative": ("CONDITIONING", {"tooltip": "The negative prompt's conditioning."}),
            "depth": ("MASK", {"tooltip": DEPTH_TOOLTIP + " From 'Depth estimate' or 'Load depth map'; another "
                                                          "aspect ratio than the latent's is stretched."}),
            "latent": ("LATENT", {"tooltip": "The latent the KSampler samples (an encoded picture, an empty "
                                             "latent, one with a noise mask, an upscaled one): the depth is "
                                             "conditioned at its size. Pass it on to the KSampler unchanged."}),
        }}

    def condition(self, positive, negative, depth, latent):
        samples = latent["samples"]
        conditioning = condition_latent_batch(depth, samples.shape[0], tuple(samples.shape[-2:]),
                                              device=model_management.intermediate_device())
        values = {CONDITIONING_KEY: conditioning}
        return (node_helpers.conditioning_set_values(positive, values),
                node_helpers.conditioning_set_values(negative, values))
