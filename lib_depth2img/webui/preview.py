"""Preview depth: the depth map a generation would get, with the current settings: of the picture for depth,
else of the picture in the current img2img/inpaint tab, or the uploaded map; in txt2img fitted to its size."""

from __future__ import annotations

from types import SimpleNamespace

from modules import images, shared
from PIL import Image

from lib_depth2img.depth_image import depth_to_image
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.picture_files import open_picture
from lib_depth2img.pipeline import condition_depth_map, condition_pictures
from lib_depth2img.user_depth import RESIZE_MODE_OF_FIT, read_depth_map
from lib_depth2img.webui import generation
from lib_depth2img.webui.hosts import SKETCH_INPUTS
from lib_depth2img.webui.pictures import fit_picture, pil_to_tensor

NO_PICTURE = "Load a picture in the img2img or inpaint tab first."
NO_MAP = "Depth source is 'upload': upload a depth map in the Depth-to-image accordion first."
NO_TXT2IMG_PICTURE = "Put a picture for depth in the Depth-to-image accordion first (or a depth map, with 'upload')."


def picture_inputs() -> tuple[str, ...]:
    """Elem ids of the img2img tabs' picture inputs, in the tabs' order; the batch tab has no single picture."""
    return generation.HOST.picture_inputs if generation.HOST is not None else ()


def _picture(value) -> Image.Image | None:
    if isinstance(value, dict):  # the inpaint editor hands {"image": ..., "mask": ...}
        value = value.get("image")
    return value if isinstance(value, Image.Image) else None


def _painted(picture: Image.Image, paint) -> Image.Image:
    """The picture with the paint laid over it, as Forge lays its canvas's layers before it generates."""
    if not isinstance(paint, Image.Image) or paint.size != picture.size:
        return picture
    return Image.alpha_composite(picture.convert("RGBA"), paint.convert("RGBA"))


def preview_depth(tab_index, *values) -> tuple[Image.Image | None, str]:
    """Returns (depth picture or None, a message for people). ``tab_index``: the selected img2img tab, -1 in
    txt2img; ``values``: the pictures, the settings, txt2img's width and height (absent or None in img2img),
    then the paint layers of ``SKETCH_INPUTS`` (absent or None where the host keeps none apart)."""
    count, settings_count = len(picture_inputs()), len(DepthArgs.names())
    pictures, settings = values[:count], values[count:count + settings_count]
    tail = 2 + len(SKETCH_INPUTS)
    width, height, *paint = (*values[count + settings_count:], *[None] * tail)[:tail]
    index = int(tab_index) if isinstance(tab_index, (int, float)) else -1
    picture = _picture(pictures[index]) if 0 <= index < len(pictures) else None
    if picture is not None and picture_inputs()[index] in SKETCH_INPUTS:
        picture = _painted(picture, paint[SKETCH_INPUTS.index(picture_inputs()[index])])
    size = (int(height), int(width)) if isinstance(width, (int, float)) and isinstance(height, (int, float)) else None
    try:
        args = DepthArgs.from_script_args(settings)
        if args.depth_source == "upload":
            return _preview_upload(args, picture, size)
        if args.depth_picture is not None:  # the depth of the picture for depth, laid out as it will be
            picture = open_picture(args.depth_picture)
            if size is not None:
                picture = fit_picture(RESIZE_MODE_OF_FIT[args.fit], picture, size[1], size[0])
        if picture is None:
            return None, NO_PICTURE if size is None else NO_TXT2IMG_PICTURE
        return _preview_estimate(args, picture)
    except Depth2ImgError as error:
        return None, str(error)


def _preview_upload(args: DepthArgs, picture: Image.Image | None,
                    txt2img_size: tuple[int, int] | None) -> tuple[Image.Image, str]:
    if args.depth_map is None:
        raise Depth2ImgError(NO_MAP)
    depth_map = read_depth_map(args.depth_map)
    if txt2img_size is not None:  # fitted as txt2img will fit it
        (height, width), mode = txt2img_size, RESIZE_MODE_OF_FIT[args.fit]
    else:
        height, width = (picture.height, picture.width) if picture is not None else depth_map.shape[-2:]
        mode = 0
    depth = condition_depth_map(depth_map, (height, width), (max(height // 8, 1), max(width // 8, 1)),
                                resize_mode=mode, adjustments=args.adjustments()).depth
    return depth_to_image(depth[0]), f"The uploaded depth map, {width}x{height}, with the adjustments."


def _model_to_preview():
    """The loaded model; Forge loads one only at the first generation (until then ``shared.sd_model`` is a
    stand-in without a checkpoint), so the checkpoint picked in the dropdown stands in (depth then comes from
    its file, as it will at generation)."""
    if getattr(shared.sd_model, "sd_checkpoint_info", None) is not None:
        return shared.sd_model
    from modules import sd_models

    info = sd_models.checkpoint_aliases.get(shared.opts.data.get("sd_model_checkpoint"))
    return SimpleNamespace(sd_checkpoint_info=info) if info is not None else None


def _preview_estimate(args: DepthArgs, picture: Image.Image) -> tuple[Image.Image | None, str]:
    sd_model = _model_to_preview()
    if not generation.is_depth_model(sd_model):
        return None, generation.NOT_A_DEPTH_MODEL
    rgb = pil_to_tensor(images.flatten(picture, shared.opts.img2img_background_color))[None]
    with generation.depth_network(sd_model, args.depth_source) as (network, spec):
        depth = condition_pictures(network, rgb, (max(rgb.shape[-2] // 8, 1), max(rgb.shape[-1] // 8, 1)),
                                   input_spec=spec, adjustments=args.adjustments(),
                                   cache=generation.DEPTH_CACHE).depth
    return depth_to_image(depth[0]).resize(picture.size), f"Depth of the {picture.width}x{picture.height} picture."
