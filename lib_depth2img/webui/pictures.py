"""The pictures depth is estimated from, as the WebUI's img2img ``init`` lays them out."""

from __future__ import annotations

import numpy as np
import torch
from modules import images
from modules.shared import opts
from PIL import Image

from lib_depth2img.picture_files import open_picture
from lib_depth2img.webui.batch_names import files_named_like

FILL_ORIGINAL = 1  # "Masked content: original": the only mode that keeps the picture under the mask
# Pictures up to this many times wider or taller than the generation are fitted by the WebUI's resize_image as
# they are. Beyond it, it makes a strip 0 pixels high ("fill": PIL's "height and width must be > 0") or covers
# the generation with gigapixels ("crop": a 1x3000 picture for 2048x64 becomes 2048x6144000 first).
MAX_ASPECT_MISMATCH = 8


def pil_to_tensor(picture: Image.Image) -> torch.Tensor:
    """``[3,H,W]`` float32 in [0, 1], contiguous; 18 bytes a pixel at the peak (8-bit copies, then the floats)."""
    rgb = np.asarray(picture if picture.mode == "RGB" else picture.convert("RGB"))
    return torch.from_numpy(rgb.transpose(2, 0, 1).copy()).float().div_(255.0)


def only_masked_crop(p) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the part "Inpaint area: Only masked" samples, or None for the whole picture."""
    return getattr(p, "paste_to", None) if p.image_mask is not None and p.inpaint_full_res else None


def fit_picture(resize_mode: int, picture: Image.Image, width: int, height: int) -> Image.Image:
    """``images.resize_image`` for a person's picture of any shape. One more than ``MAX_ASPECT_MISMATCH`` times
    wider or taller than ``width`` x ``height`` is first cropped to that ratio for "crop" (which keeps only its
    middle anyway), or scaled to fit, at least a pixel thick, for "fill"."""
    target = width / height
    mismatch = picture.width / picture.height / target
    beyond = not 1 / MAX_ASPECT_MISMATCH <= mismatch <= MAX_ASPECT_MISMATCH
    if resize_mode == 1 and beyond:
        limit = target * MAX_ASPECT_MISMATCH if mismatch > 1 else target / MAX_ASPECT_MISMATCH
        new_width = min(picture.width, max(1, round(picture.height * limit)))
        new_height = min(picture.height, max(1, round(picture.width / limit)))
        left, top = (picture.width - new_width) // 2, (picture.height - new_height) // 2
        picture = picture.crop((left, top, left + new_width, top + new_height))
    elif resize_mode == 2 and beyond:
        scale = min(width / picture.width, height / picture.height)
        picture = picture.resize((max(1, round(picture.width * scale)), max(1, round(picture.height * scale))),
                                 Image.LANCZOS)
    return images.resize_image(resize_mode, picture, width, height)


def untouched_pictures(p) -> torch.Tensor:
    """``p.init_images`` flattened, resized or cropped exactly as ``init`` does, but never filled."""
    crop = only_masked_crop(p)
    laid_out = []
    for picture in p.init_images:
        picture = images.flatten(picture, opts.img2img_background_color)
        if crop is not None:
            x, y, width, height = crop
            picture = images.resize_image(2, picture.crop((x, y, x + width, y + height)), p.width, p.height)
        elif p.resize_mode != 3:
            picture = images.resize_image(p.resize_mode, picture, p.width, p.height)
        laid_out.append(pil_to_tensor(picture))
    return torch.stack(laid_out)


def lay_out_like_init(p, picture: Image.Image, init_picture: Image.Image) -> torch.Tensor:
    """Another picture, ``[3,H,W]`` in [0, 1], placed where ``init`` places ``init_picture``: fitted by the resize
    mode, or with "Only masked" stretched over the init picture and cropped as it is."""
    crop = only_masked_crop(p)
    if crop is not None:
        x, y, width, height = crop
        whole = picture.resize(init_picture.size, Image.LANCZOS)
        picture = images.resize_image(2, whole.crop((x, y, x + width, y + height)), p.width, p.height)
    else:
        picture = fit_picture(p.resize_mode if p.resize_mode in (0, 1, 2) else 0, picture, p.width, p.height)
    return pil_to_tensor(picture)


def depth_pictures(p, source_image: torch.Tensor, args) -> tuple[torch.Tensor, bool]:
    """``[N,3,H,W]`` in [0, 1], one per distinct init picture (a single picture is not repeated), and whether
    any came from another picture than the init one.

    Each comes from the depth folder's picture named like the init picture (Batch tab), else the picture for
    depth, else the init picture itself. ``source_image`` is what the WebUI hands its depth path: the batch in
    [-1, 1], with the masked area already filled unless "Masked content" is "original".
    """
    distinct = 1 if len(p.init_images) == 1 else source_image.shape[0]
    init_pictures = list(p.init_images)[:distinct]
    named = files_named_like(args.depth_map_folder, init_pictures, "picture for depth")
    others = [file if file is not None else args.depth_picture for file in named]
    filled = p.image_mask is not None and p.inpainting_fill != FILL_ORIGINAL
    if all(other is None for other in others):
        if filled and args.depth_from_original:
            return untouched_pictures(p).to(source_image.device), False
        return (source_image[:distinct].float() * 0.5 + 0.5).clamp(0, 1), False
    untouched = untouched_pictures(p) if filled and args.depth_from_original else None
    laid_out = []
    for index, (other, init_picture) in enumerate(zip(others, init_pictures, strict=True)):
        if other is not None:
            laid_out.append(lay_out_like_init(p, open_picture(other), init_picture))
        elif untouched is not None:
            laid_out.append(untouched[index])
        else:
            laid_out.append((source_image[index].float().cpu() * 0.5 + 0.5).clamp(0, 1))
    return torch.stack(laid_out).to(source_image.device), True
