"""Pictures given for depth as the API and the page hand them over: base64, data URLs, bytes, PIL pictures;
only allowed formats, within the pixel limit, and a string is never a path."""

import base64
import io
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from crafted_pictures import OTHER_FORMATS, bmp_claiming, png_claiming, webp_claiming
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from reference import synthetic_image

from lib_depth2img import Depth2ImgError, picture_data
from lib_depth2img.picture_data import MAX_PICTURE_PIXELS, decoded_base64
from lib_depth2img.picture_files import check_picture, open_picture, reduced_for_estimation

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
    picture = np.asarray(open_picture(tmp_path / "gray16.png"))  # a Path: our own code's file, as the Batch tab's
    assert picture.shape == (48, 80, 3) and picture[:, -1].min() == 255 and picture[:, 0].max() == 0
    assert np.abs(picture[0, :, 0] - np.linspace(0, 255, 80)).max() <= 1  # levels / 65535, not clipped to white
    rgba = Image.fromarray(np.dstack([PIXELS, np.full(PIXELS.shape[:2], 128, np.uint8)]))
    assert np.array_equal(np.asarray(open_picture(_file_bytes(rgba))), PIXELS)


@pytest.mark.parametrize(("source", "words"), [
    ("not base64!", "not valid base64 picture data: it has characters"),
    (base64.b64encode(b"<html>").decode(), "not valid base64 picture data: the bytes it holds are not a PNG"),
    (b"", "The picture for depth (upload) is empty"),
    (png_claiming(16, 16)[:60], "Cannot read the picture for depth (upload) as a PNG picture"),  # cut short
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


def _png(pixels: np.ndarray) -> bytes:
    return _file_bytes(Image.fromarray(pixels))


def test_base64_as_people_send_it_gives_the_same_picture():
    data = _png(PIXELS)
    standard = base64.b64encode(data).decode()
    assert "=" in standard and ("+" in standard or "/" in standard)  # so each variant below differs from it
    variants = {
        "MIME lines of 76": base64.encodebytes(data).decode(),
        "CRLF and spaces": "\r\n ".join(standard[i:i + 64] for i in range(0, len(standard), 64)),
        "URL-safe": base64.urlsafe_b64encode(data).decode(),
        "no padding": standard.rstrip("="),
        "URL-safe data URL": "data:image/png;base64," + base64.urlsafe_b64encode(data).decode().rstrip("="),
    }
    for name, text in variants.items():
        assert np.array_equal(np.asarray(open_picture(text)), PIXELS), name


@given(st.binary(max_size=200), st.booleans(), st.booleans(), st.integers(1, 80))
def test_decoded_base64_agrees_with_the_base64_module(data, urlsafe, padded, line):
    text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode()
    text = text if padded else text.rstrip("=")
    text = "\n".join(text[i:i + line] for i in range(0, len(text), line))
    if data:
        assert decoded_base64(text, "picture") == data
    else:
        with pytest.raises(Depth2ImgError, match="empty"):
            decoded_base64(text, "picture")


def test_a_path_string_is_never_read_and_says_nothing_of_the_file(tmp_path):
    """The API's old hole: a string naming a server file was read as that file."""
    for name in ("picture.png", "picture"):  # with a dot (not base64) and without (base64 letters only)
        path = tmp_path / name
        path.write_bytes(_png(PIXELS))
        messages = []
        for _ in ("the file exists", "it does not"):
            with pytest.raises(Depth2ImgError) as error:
                open_picture(str(path))
            messages.append(str(error.value))
            path.unlink(missing_ok=True)
        assert "not valid base64 picture data" in messages[0] and "never read" in messages[0]
        assert messages[0] == messages[1]  # the same answer whether the file exists or not
        path.write_bytes(_png(PIXELS))
    assert np.array_equal(np.asarray(open_picture(tmp_path / "picture.png")), PIXELS)  # a Path is read


@pytest.mark.parametrize("kind", ["png", "jpg", "webp", "tif", "bmp"])
@pytest.mark.parametrize("writer", ["pillow", "opencv"])
def test_the_allowed_formats_as_pillow_and_opencv_write_them(tmp_path, kind, writer):
    path = tmp_path / f"picture.{kind}"
    if writer == "pillow":
        Image.fromarray(PIXELS).save(path, **({"lossless": True} if kind == "webp" else {}))
    else:
        assert cv2.imwrite(str(path), PIXELS[..., ::-1], [cv2.IMWRITE_WEBP_QUALITY, 101] if kind == "webp" else [])
    for source in (path, path.read_bytes(), base64.b64encode(path.read_bytes()).decode()):
        picture = np.asarray(open_picture(source), dtype=np.float64)
        tolerance = 8 if kind == "jpg" else 0  # JPEG is lossy; the others give the pixels back
        assert picture.shape == PIXELS.shape and np.abs(picture - PIXELS).mean() <= tolerance, (kind, writer)


@pytest.mark.parametrize("kind", sorted(OTHER_FORMATS))
def test_other_formats_are_refused_by_their_bytes_whatever_their_name(tmp_path, kind):
    renamed = tmp_path / "innocent.png"
    renamed.write_bytes(OTHER_FORMATS[kind])
    for source in (OTHER_FORMATS[kind], renamed):
        with pytest.raises(Depth2ImgError, match="is not a PNG, JPEG, WebP, TIFF or BMP picture"):
            open_picture(source)
    with pytest.raises(Depth2ImgError, match="not valid base64 picture data: the bytes it holds are not a PNG"):
        open_picture(base64.b64encode(OTHER_FORMATS[kind]).decode())


def test_an_eps_never_reaches_pillow_or_ghostscript(tmp_path):
    """In a fresh interpreter: refused from its first bytes, so Pillow's EPS plugin (which runs Ghostscript)
    is never even imported."""
    script = f"""
import sys
sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).parent.parent)!r}]
from crafted_pictures import EPS
from lib_depth2img import Depth2ImgError
from lib_depth2img.picture_files import open_picture
from lib_depth2img.user_depth import read_depth_map
for read in (open_picture, read_depth_map):
    try:
        read(EPS)
    except Depth2ImgError as error:
        print(type(error).__name__)
print("PIL.EpsImagePlugin" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Depth2ImgError", "Depth2ImgError", "False"]


@pytest.mark.parametrize(("crafted", "words"), [
    (png_claiming(30000, 30000), "above the limit of 64 megapixels"),  # Pillow's own guard trips first
    (png_claiming(22000, 22000, bit_depth=16), "above the limit of 64 megapixels"),
    (png_claiming(9000, 9000), "is 9000x9000 pixels, above the limit of 64 megapixels"),  # below Pillow's guard
    (bmp_claiming(20000, 20000), "above the limit of 64 megapixels"),
])
def test_a_header_claiming_too_many_pixels_is_refused_before_decoding(crafted, words):
    assert len(crafted) < 200 and MAX_PICTURE_PIXELS == 64_000_000
    for source in (crafted, base64.b64encode(crafted).decode()):
        with pytest.raises(Depth2ImgError, match=words):
            open_picture(source)


def test_the_pixel_limit_holds_for_pil_pictures_too():
    with pytest.raises(Depth2ImgError, match="8001x8000 pixels, above the limit"):
        open_picture(Image.open(io.BytesIO(png_claiming(8001, 8000))))  # opened lazily: its header only


def test_the_cli_reads_its_own_files_up_to_its_larger_limit(tmp_path):
    path = tmp_path / "pano.png"
    path.write_bytes(bmp_claiming(12000, 8000))  # 96 MP: above the API's limit, within the CLI's
    assert check_picture(path) == (8000, 12000)
    path.write_bytes(bmp_claiming(30000, 20000))
    with pytest.raises(Depth2ImgError, match="above the limit of 500 megapixels"):
        check_picture(path)
    with pytest.raises(Depth2ImgError, match="above the limit of 64 megapixels"):
        open_picture(tmp_path / "pano.png")


def test_the_file_size_limit_is_checked_before_the_text_is_decoded(monkeypatch):
    assert picture_data.MAX_PICTURE_BYTES == 128 * 2**20
    data = _png(PIXELS)
    monkeypatch.setattr(picture_data, "MAX_PICTURE_BYTES", len(data) - 1)
    with pytest.raises(Depth2ImgError, match="more than 0 MiB of base64 data"):
        open_picture(base64.b64encode(data).decode())
    with pytest.raises(Depth2ImgError, match=r"\(upload\) is larger than 0 MiB"):
        open_picture(data)


@pytest.mark.parametrize("text", ["aGVsbG8===", "aGVs=bG8", "a", "aGVsbG8*", "aGVsbG8\u00e9", "===="])
def test_what_base64_does_not_allow_is_refused(text):
    with pytest.raises(Depth2ImgError, match="not valid base64 picture data|is empty"):
        decoded_base64(text, "picture")


def test_a_webp_is_measured_before_pillow_opens_it(monkeypatch):
    """Pillow's WebP plugin makes libwebp reserve the whole canvas at open: the size is read from the chunk first."""
    for width, height in ((9000, 9000), (16384, 16384)):  # below Pillow's own guard; VP8L's largest
        crafted = webp_claiming(width, height)
        with monkeypatch.context() as patch:
            patch.setattr(Image, "open", lambda *args, **kwargs: pytest.fail("Pillow opened it"))
            with pytest.raises(Depth2ImgError, match=f"{width}x{height} pixels, above the limit"):
                open_picture(crafted)


@pytest.mark.parametrize("chunk", [b"VP8L", b"VP8 ", b"VP8X"])
def test_the_size_read_from_real_webp_files_is_pillows(chunk):
    from lib_depth2img.picture_data import _webp_size

    exif = Image.Exif()
    exif[0x0112] = 1  # metadata makes the extended layout (VP8X)
    save = {b"VP8L": {"lossless": True}, b"VP8 ": {"quality": 90}, b"VP8X": {"exif": exif.tobytes()}}[chunk]
    buffer = io.BytesIO()
    Image.fromarray(PIXELS).save(buffer, format="WEBP", **save)
    data = buffer.getvalue()
    assert data[12:16] == chunk
    assert _webp_size(data[:32]) == Image.open(io.BytesIO(data)).size == (80, 48)
    assert open_picture(data).size == (80, 48)
