"""The example workflows' input files, written the way real tools write them, and what the core makes of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from reference import synthetic_image

from lib_depth2img.conditioning import build_depth_conditioning
from lib_depth2img.pipeline import condition_pictures

PICTURE, DEPTH_MAP, MASK = "depth2img_example.png", "depth2img_example_depth.png", "depth2img_example_mask.png"
SIZE = 128  # the example pictures' side; the workflows' latents are resized to match (see graphs.quick)
# The 16-bit map spans 30000..30200 of 65535: all of it falls into two 8-bit levels (117, 118), so a loader that
# keeps 8 bits gives an almost flat conditioning, and one that keeps 16 gives the whole ramp.
MAP_LOW, MAP_HIGH = 30000, 30200


def depth_map_values(size: int = SIZE) -> np.ndarray:
    """uint16: near (high) on the right, with a gentle vertical wave so that rows differ too."""
    x = np.linspace(0.0, 1.0, size)[None, :]
    y = np.linspace(0.0, 1.0, size)[:, None]
    ramp = 0.8 * x + 0.2 * (0.5 + 0.5 * np.sin(2 * np.pi * y))
    return np.round(MAP_LOW + (MAP_HIGH - MAP_LOW) * ramp).astype(np.uint16)


def write_examples(folder: Path, size: int = SIZE) -> None:
    """The picture (8-bit RGB), the 16-bit depth map (Pillow's 'I;16' PNG) and the inpaint mask (white = redo)."""
    Image.fromarray((synthetic_image(size, size) * 255).round().astype(np.uint8)).save(folder / PICTURE)
    Image.fromarray(depth_map_values(size)).save(folder / DEPTH_MAP)
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 255
    Image.fromarray(mask).save(folder / MASK)


def picture_tensor(folder: Path) -> torch.Tensor:
    """The picture as ComfyUI's LoadImage reads it ([B,H,W,3] / 255), in the core's layout [B,3,H,W]."""
    pixels = np.asarray(Image.open(folder / PICTURE).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()


def expected_from_picture(estimator, folder: Path, latent_size: tuple[int, int], *,
                          as_mask: bool = True) -> torch.Tensor:
    """The core's conditioning of the example picture. ``as_mask``: through a ComfyUI MASK, which holds each map
    stretched over [0, 1] (the contract); the training rule's ``+ 0.001`` then acts on a range of 1 instead of the
    estimator's own range, a small, stated difference from the WebUI (see the fifth-channel test)."""
    depth = condition_pictures(estimator, picture_tensor(folder), latent_size).depth
    if as_mask:
        low, high = depth.amin(dim=(1, 2, 3), keepdim=True), depth.amax(dim=(1, 2, 3), keepdim=True)
        depth = (depth - low) / (high - low)
    return build_depth_conditioning(depth, latent_size)


def expected_from_map(latent_size: tuple[int, int]) -> torch.Tensor:
    """The training rule on the 16-bit map read as value / 65535, as the WebUI conditions an uploaded map."""
    depth = torch.from_numpy(depth_map_values().astype(np.float64) / 65535.0).float()[None, None]
    return build_depth_conditioning(depth, latent_size)


def fifth_channel(probe: dict) -> torch.Tensor:
    """What the UNet's first conv received in its depth channel, for every row of the batch (cond and uncond)."""
    assert probe["first_conv_weight_shape"][1] == 5 and probe["conv_input"].shape[1] == 5
    return probe["conv_input"][:, 4:5]
