from PIL import Image, ImageOps


def resize_image(resize_mode, im, width, height, upscaler_name=None):
    """0: stretch to width x height; 1: cover and crop; 2: fit inside, centred (the real one also fills the
    borders)."""
    if resize_mode == 0:
        return im.resize((width, height), resample=Image.LANCZOS)
    if resize_mode == 1:  # cover, centred, the excess cropped: the real one's arithmetic
        ratio, src_ratio = width / height, im.width / im.height
        src_w = width if ratio > src_ratio else im.width * height // im.height
        src_h = height if ratio <= src_ratio else im.height * width // im.width
        canvas = Image.new("RGB", (width, height))
        canvas.paste(im.resize((src_w, src_h), resample=Image.LANCZOS),
                     box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
        return canvas
    if resize_mode != 2:
        raise NotImplementedError("the imitation covers resize modes 0, 1 and 2")
    ratio, src_ratio = width / height, im.width / im.height  # fit inside, centred: the real one's arithmetic
    src_w = width if ratio < src_ratio else im.width * height // im.height
    src_h = height if ratio >= src_ratio else im.height * width // im.width
    canvas = Image.new("RGB", (width, height))
    canvas.paste(im.resize((src_w, src_h), resample=Image.LANCZOS),
                 box=(width // 2 - src_w // 2, height // 2 - src_h // 2))
    return canvas


def flatten(img, bgcolor):
    if img.mode == "RGBA":
        background = Image.new("RGBA", img.size, bgcolor)
        background.paste(img, mask=img)
        img = background
    return img.convert("RGB")


def read(fp, **kwargs):
    return ImageOps.exif_transpose(Image.open(fp, **kwargs))
