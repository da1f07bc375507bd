"""Depth maps a person brings, laid out the way the WebUI lays out the pictures they belong to."""

from __future__ import annotations

import torch

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.pipeline import DepthConditioning, condition_depth_map
from lib_depth2img.user_depth import fit_depth_map, read_depth_map
from lib_depth2img.webui.batch_names import files_named_like
from lib_depth2img.webui.pictures import only_masked_crop


def condition_user_maps(p, args: DepthArgs, latent_size: tuple[int, int], dtype: torch.dtype) -> DepthConditioning:
    """One conditioning per distinct init picture: the folder's map named like it (Batch tab), else the uploaded one."""
    pictures = list(p.init_images)
    named = files_named_like(args.depth_map_folder, pictures, "depth map")
    sources = [file if file is not None else args.depth_map for file in named]
    if any(source is None for source in sources):
        raise Depth2ImgError("Depth maps from a folder are matched by the pictures' file names, and this picture "
                             "has none: use the img2img Batch tab, or upload one depth map.")
    crop = only_masked_crop(p)
    results = []
    for source, picture in zip(sources, pictures, strict=True):
        depth_map = read_depth_map(source)
        if crop is not None:  # "Only masked": the map's part under the crop, as the picture's
            x, y, width, height = crop
            whole = fit_depth_map(depth_map, picture.height, picture.width, 0)
            depth_map, mode = whole[..., y:y + height, x:x + width], 2
        else:
            mode = p.resize_mode if p.resize_mode in (0, 1, 2) else 0
        results.append(condition_depth_map(depth_map, (p.height, p.width), latent_size, resize_mode=mode,
                                           adjustments=args.adjustments(), dtype=dtype))
    return DepthConditioning(torch.cat([r.depth for r in results]), torch.cat([r.conditioning for r in results]))
