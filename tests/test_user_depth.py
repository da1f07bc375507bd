"""Depth maps people bring, and the adjustments applied before the conditioning rule."""

import base64
import io

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from crafted_pictures import EPS, bmp_claiming, png_claiming, webp_claiming
from PIL import Image
from reference import conditioning_by_the_rule

from lib_depth2img import Depth2ImgError
from lib_depth2img.adjustments import DepthAdjustments, adjust_depth
from lib_depth2img.pipeline import condition_depth_map
from lib_depth2img.user_depth import fit_depth_map, read_depth_map

RAMP16 = (np.arange(48 * 64, dtype=np.float64).reshape(48, 64) * 21).astype(np.uint16)  # 3072 distinct levels


def _write(path, array):
    assert cv2.imwrite(str(path), array)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_gray_keeps_every_level(tmp_path, suffix):
    depth = read_depth_map(_write(tmp_path / f"map{suffix}", RAMP16))
    assert depth.shape == (1, 1, 48, 64) and depth.dtype == torch.float32
    assert torch.allclose(depth[0, 0], torch.from_numpy(RAMP16 / 65535).float())
    assert len(torch.unique(depth)) == RAMP16.size


def test_sixteen_bit_colour_is_read_by_luminance(tmp_path):
    bgr = np.stack([RAMP16 // 3, RAMP16 // 2, RAMP16], axis=-1)  # OpenCV's channel order
    depth = read_depth_map(_write(tmp_path / "colour.png", bgr))
    expected = (0.114 * bgr[..., 0] + 0.587 * bgr[..., 1] + 0.299 * bgr[..., 2]) / 65535
    assert torch.allclose(depth[0, 0].double(), torch.from_numpy(expected), atol=1e-6)


@pytest.mark.parametrize(("suffix", "tolerance"), [(".png", 1e-6), (".webp", 0.02), (".jpg", 0.04)])
def test_eight_bit_formats(tmp_path, suffix, tolerance):
    gray = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if suffix == ".webp" else []
    path = tmp_path / f"map{suffix}"
    assert cv2.imwrite(str(path), gray, params)
    depth = read_depth_map(path)
    assert (depth[0, 0] - torch.from_numpy(gray / 255).float()).abs().max() < tolerance


def test_base64_data_url_bytes_and_pil_agree(tmp_path):
    path = _write(tmp_path / "map.png", RAMP16)
    data = path.read_bytes()
    encoded = base64.b64encode(data).decode()
    from_file = read_depth_map(path)
    for source in (encoded, "data:image/png;base64," + encoded, data, Image.open(io.BytesIO(data))):
        assert torch.allclose(read_depth_map(source), from_file)


@pytest.mark.parametrize(("content", "message"), [(b"", "empty"), (b"not a picture at all", "not a PNG, JPEG"),
                                                   (None, "same value everywhere")])
def test_invalid_maps_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "map.png"
    if content is None:
        _write(path, np.full((8, 8), 77, dtype=np.uint8))
    else:
        path.write_bytes(content)
    with pytest.raises(Depth2ImgError, match=message):
        read_depth_map(path)


def test_a_path_string_is_data_never_a_file(tmp_path):
    path = _write(tmp_path / "map.png", RAMP16).rename(tmp_path / "depth")  # no suffix: base64 letters only
    answers = []
    for _ in ("the file exists", "it does not"):
        with pytest.raises(Depth2ImgError, match="not valid base64 picture data") as error:
            read_depth_map(str(path))
        answers.append(str(error.value))
        path.unlink(missing_ok=True)
    assert answers[0] == answers[1]
    with pytest.raises(Depth2ImgError, match="not valid base64 picture data: it has characters"):
        read_depth_map("/no/such/depth.png")


def test_bmp_and_sixteen_bit_rgba_are_read(tmp_path):
    gray = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    assert torch.equal(read_depth_map(_write(tmp_path / "map.bmp", gray))[0, 0], torch.from_numpy(gray / 255).float())
    bgra = np.stack([RAMP16, RAMP16, RAMP16, np.full_like(RAMP16, 65535)], axis=-1)
    depth = read_depth_map(_write(tmp_path / "rgba.png", bgra))  # alpha is left out
    assert torch.allclose(depth[0, 0], torch.from_numpy(RAMP16 / 65535).float(), atol=1e-6)


@pytest.mark.parametrize(("crafted", "words"), [
    (png_claiming(30000, 30000), "above the limit of 64 megapixels"),  # 875 bytes asked OpenCV for 6.7 GB
    (png_claiming(30000, 30000, bit_depth=16, colour_type=6), "above the limit of 64 megapixels"),  # 16-bit RGBA
    (png_claiming(8001, 8000, bit_depth=16), "8001x8000 pixels, above the limit of 64 megapixels"),
    (bmp_claiming(20000, 20000), "above the limit of 64 megapixels"),
    (webp_claiming(9000, 9000), "9000x9000 pixels, above the limit of 64 megapixels"),
    (EPS, "is not a PNG, JPEG, WebP, TIFF or BMP picture"),
])
def test_hostile_maps_are_refused_from_their_header(tmp_path, crafted, words):
    renamed = tmp_path / "map.png"
    renamed.write_bytes(crafted)
    for source in (crafted, renamed):
        with pytest.raises(Depth2ImgError, match=words):
            read_depth_map(source)
    with pytest.raises(Depth2ImgError, match="above the limit" if "limit" in words else "not valid base64"):
        read_depth_map(base64.b64encode(crafted).decode())


def test_fit_stretch_crop_and_fill():
    depth = torch.arange(4 * 8, dtype=torch.float32).view(1, 1, 4, 8)  # 2:1
    assert fit_depth_map(depth, 8, 8, 0).shape == (1, 1, 8, 8)
    cropped = fit_depth_map(depth, 4, 4, 1)  # same height: the middle half of the columns
    assert torch.equal(cropped, depth[..., 2:6])
    filled = fit_depth_map(depth, 8, 8, 2)  # fits 4x8 inside 8x8, rows above and below copy the edges
    assert torch.equal(filled[..., 2:6, :], depth)
    assert torch.equal(filled[..., 0, :], depth[..., 0, :]) and torch.equal(filled[..., 7, :], depth[..., 3, :])


def test_adjustments_hand_computed():
    depth = torch.tensor([[[[0.0, 1.0, 2.0, 3.0, 4.0]]]])
    assert torch.equal(adjust_depth(depth, DepthAdjustments()), depth)  # nothing asked: untouched
    levels = adjust_depth(depth, DepthAdjustments(near=0.75, far=0.25))
    assert torch.allclose(levels, torch.tensor([[[[0.0, 0.0, 0.5, 1.0, 1.0]]]]))
    gamma = adjust_depth(depth, DepthAdjustments(gamma=2.0))
    assert torch.allclose(gamma, torch.tensor([[[[0.0, 0.0625, 0.25, 0.5625, 1.0]]]]))
    inverted = adjust_depth(depth, DepthAdjustments(invert=True))
    assert torch.equal(inverted, torch.tensor([[[[4.0, 3.0, 2.0, 1.0, 0.0]]]]))


def test_blur_is_a_normalised_gaussian():
    depth = torch.zeros(1, 1, 41, 41)
    depth[..., 20, 20] = 1.0
    blurred = adjust_depth(depth, DepthAdjustments(blur=5.0))  # sigma = 5% of 41 = 2.05 px
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-4)
    expected_ratio = np.exp(-0.5 * (1 / 2.05) ** 2)
    assert blurred[0, 0, 20, 21].item() / blurred[0, 0, 20, 20].item() == pytest.approx(expected_ratio, rel=1e-4)
    # a kernel wider than the map (a one-row map): reflect padding runs out, the edge is repeated
    assert adjust_depth(torch.rand(1, 1, 1, 40), DepthAdjustments(blur=10)).shape == (1, 1, 1, 40)


@pytest.mark.parametrize("bad", [dict(near=0.2, far=0.5), dict(gamma=0), dict(blur=-1), dict(blur=10.5),
                                 dict(gamma=float("nan"))])
def test_adjustment_ranges(bad):
    with pytest.raises(Depth2ImgError):
        DepthAdjustments(**bad)


def test_user_map_conditioning_follows_the_rule():
    depth_map = torch.linspace(0, 1, 30 * 40).view(1, 1, 30, 40)
    result = condition_depth_map(depth_map, (64, 96), (8, 12), resize_mode=1, dtype=torch.float16)
    assert result.depth.shape == (1, 1, 64, 96) and result.conditioning.dtype == torch.float16
    # "Crop and resize": x2.4 covers 64x96 (72x96, bilinear), then the middle 64 rows
    cropped = F.interpolate(depth_map, size=(72, 96), mode="bilinear", align_corners=False)[..., 4:68, :]
    assert torch.allclose(result.depth, cropped, atol=1e-6)
    assert torch.allclose(result.conditioning.float(), conditioning_by_the_rule(cropped, (8, 12)), atol=1e-3)


def test_a_map_file_larger_than_the_limit_is_not_read_whole(tmp_path, monkeypatch):
    from lib_depth2img import picture_data

    path = _write(tmp_path / "map.png", RAMP16)
    monkeypatch.setattr(picture_data, "MAX_PICTURE_BYTES", path.stat().st_size - 1)
    with pytest.raises(Depth2ImgError, match="map.png is larger than 0 MiB"):
        read_depth_map(path)
