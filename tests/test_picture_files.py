"""Pictures given for depth as the API and the page hand them over: base64, data URLs, bytes, PIL pictures."""

import base64
import io

import numpy as np
import pytest
from PIL import Image
from reference import synthetic_image

from lib_depth2img import Depth2ImgError
from lib_depth2img.picture_files import open_picture, reduced_for_estimation

PIXELS = (synthetic_image(48, 80) * 255).round().astype(np.uint8)


def _file_bytes(picture: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", **save)
    return buffer.getvalue()


def test_a_phone_photo_in_base64_comes_upright():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, to be turned 90 degrees clockwise
    data = _file_bytes(Image.fromarray(PIXELS), exif=exif)
    upright = np.rot90(PIXELS, k=-1)
    for source in (base64.b64encode(data).decode(), "data:image/png;base64," + base64.b64encode(data).decode(),
                   data, Image.open(io.BytesIO(data))):
        picture = open_picture(source)
        assert picture.mode == "RGB" and np.array_equal(np.asarray(picture), upright)


def test_sixteen_bit_gray_keeps_its_range_and_rgba_drops_alpha(tmp_path):
    levels = (np.linspace(0, 1, 80)[None].repeat(48, 0) * 65535).round().astype(np.uint16)
    Image.fromarray(levels).save(tmp_path / "gray16.png")
    picture = np.asarray(open_picture(str(tmp_path / "gray16.png")))
    assert picture.shape == (48, 80, 3) and picture[:, -1].min() == 255 and picture[:, 0].max() == 0
    assert np.abs(picture[0, :, 0] - np.linspace(0, 255, 80)).max() <= 1  # levels / 65535, not clipped to white
    rgba = Image.fromarray(np.dstack([PIXELS, np.full(PIXELS.shape[:2], 128, np.uint8)]))
    assert np.array_equal(np.asarray(open_picture(_file_bytes(rgba))), PIXELS)


@pytest.mark.parametrize(("source", "words"), [
    ("not base64!", "neither an existing file nor valid base64"),
    (base64.b64encode(b"<html>").decode(), "Cannot read the picture (base64)"),
    (b"", "Cannot read the picture (upload)"),
    (3.5, "not float"),
])
def test_what_is_no_picture_says_so(source, words):
    with pytest.raises(Depth2ImgError, match=words.replace("(", r"\(").replace(")", r"\)")):
        open_picture(source)


def test_large_pictures_are_reduced_by_a_whole_factor_below_the_limit():
    picture = Image.new("RGB", (5000, 4000))  # 20 MP: above the 16 MP limit, so halved
    assert reduced_for_estimation(picture).size == (2500, 2000)
    small = Image.new("RGB", (400, 300))
    assert reduced_for_estimation(small) is small
