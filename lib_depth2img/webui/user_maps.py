"""Depth maps a person brings, laid out the way the WebUI lays out the pictures they belong to."""

from __future__ import annotations

from pathlib import Path

import torch

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.pipeline import DepthConditioning, condition_depth_map
from lib_depth2img.user_depth import FORMATS, fit_depth_map, read_depth_map
from lib_depth2img.webui.batch_names import source_name
from lib_depth2img.webui.pictures import only_masked_crop

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def _from_folder(folder: str, pictures: list) -> list[Path]:
    """The map for each picture: same file name, any depth-map format (the img2img Batch tab)."""
    directory = Path(folder)
    if not directory.is_dir():
        raise Depth2ImgError(f"The depth map folder {directory} does not exist.")
    maps = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in SUFFIXES:
            maps.setdefault(path.stem, path)
    found = []
    for picture in pictures:
        stem = source_name(picture)
        if not stem:
            raise Depth2ImgError("Depth maps from a folder are matched by the pictures' file names, and this "
                                 "picture has none: use the img2img Batch tab, or upload one depth map.")
        if stem not in maps:
            raise Depth2ImgError(f"No depth map named {stem} ({FORMATS}) in {directory}.")
        found.append(maps[stem])
    return found


def condition_user_maps(p, args: DepthArgs, latent_size: tuple[int, int], dtype: torch.dtype) -> DepthConditioning:
    """One conditioning per distinct init picture, from the uploaded map or the folder's."""
    pictures = list(p.init_images)
    if args.depth_map_folder:
        sources = _from_folder(args.depth_map_folder, pictures)
    elif args.depth_map is not None:
        sources = [args.depth_map] * len(pictures)
    else:
        raise Depth2ImgError("Depth source is 'upload' but no depth map was given: upload one in the "
                             "Depth-to-image accordion (through the API: depth_map as base64).")
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
