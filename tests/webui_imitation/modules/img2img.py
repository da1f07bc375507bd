"""The img2img Batch tab's loop: each file read, EXIF-rotated (a copy without its file name), processed."""

import os

from PIL import ImageOps

from modules import images, processing, shared


def process_batch(p, input, output_dir, inpaint_mask_dir, args, to_scale=False, scale_by=1.0, use_png_info=False,
                  png_info_props=None, png_info_dir=None):
    """``args``: here, the scripts to run (the real one takes the scripts' arguments; p carries its runner)."""
    if isinstance(input, str):
        files = list(shared.walk_files(input, allowed_extensions=(".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")))
    else:
        files = [os.path.abspath(x.name) for x in input]
    conditionings = []
    for path in files:
        p.init_images = [ImageOps.exif_transpose(images.read(path))]
        processing.process_images(p, args)
        conditionings.append(p.sampled_with[-1])
    return conditionings
