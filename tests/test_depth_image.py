"""Depth maps to and from pictures: 8 and 16 bits, grayscale and RGB, white = near."""

import numpy as np
import pytest
import torch
from crafted_pictures import bmp_claiming
from PIL import Image

from lib_depth2img import Depth2ImgError
from lib_depth2img.depth_image import depth_from_image, depth_to_image, depth_to_image16, save_depth_png


def _ramp(height=32, width=48):
    return torch.linspace(0.5, 7.0, height * width).view(1, 1, height, width)


def test_eight_bit_is_stretched_and_white_is_near():
    image = depth_to_image(_ramp())
    assert image.mode == "L" and image.size == (48, 32)
    array = np.asarray(image)
    assert array.min() == 0 and array.max() == 255
    assert array[-1, -1] == 255  # the largest inverse depth (nearest) is white


def test_sixteen_bit_png_round_trip_keeps_fine_steps(tmp_path):
    depth = _ramp()
    path = save_depth_png(depth, tmp_path / "d.png", bits=16)
    back = depth_from_image(path)
    expected = (depth - depth.min()) / (depth.max() - depth.min())
    assert back.shape == (1, 1, 32, 48) and back.dtype == torch.float32
    assert (back - expected).abs().max().item() <= 0.5 / 65535 + 1e-7
    assert len(np.unique(back.numpy())) == 32 * 48  # every pixel its own level; 8 bits would band


def test_eight_bit_png_round_trip(tmp_path):
    path = save_depth_png(_ramp(), tmp_path / "d.png", bits=8)
    back = depth_from_image(path)
    expected = (_ramp() - 0.5) / 6.5
    assert (back - expected).abs().max().item() <= 0.5 / 255 + 1e-6


def test_rgb_is_read_by_luminance(tmp_path):
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    value = depth_from_image(tmp_path / "rgb.png")[0, 0, 0, 0].item()
    assert value == pytest.approx((0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255, abs=1e-6)


def test_flat_map_is_black_not_nan():
    assert np.asarray(depth_to_image(torch.ones(1, 1, 4, 4))).max() == 0
    assert np.asarray(depth_to_image16(torch.ones(4, 4))).max() == 0


def test_not_a_picture(tmp_path):
    bad = tmp_path / "depth.png"
    bad.write_text("not an image")
    with pytest.raises(Depth2ImgError, match="depth.png is not a PNG, JPEG, WebP, TIFF or BMP picture"):
        depth_from_image(bad)


def test_a_bmp_claiming_twenty_thousand_squared_is_our_error(tmp_path):
    """Pillow's own guard raised DecompressionBombError here; the header is now refused with our limit."""
    bomb = tmp_path / "bomb.bmp"
    bomb.write_bytes(bmp_claiming(20000, 20000))
    for source in (bomb, bomb.read_bytes()):
        with pytest.raises(Depth2ImgError, match="above the limit of 64 megapixels"):
            depth_from_image(source)


def test_a_path_string_is_not_read(tmp_path):
    path = save_depth_png(_ramp(), tmp_path / "d.png")
    with pytest.raises(Depth2ImgError, match="not valid base64 picture data"):
        depth_from_image(str(path))


def test_saving_never_writes_through_a_planted_link(tmp_path):
    """Links at the old predictable temporary name and at the map's own name: both victims keep their bytes."""
    victim, other_victim = tmp_path / "victim.txt", tmp_path / "other.txt"
    victim.write_text("keep me"), other_victim.write_text("keep me too")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".d.png.partial").symlink_to(victim)
    (out / "d.png").symlink_to(other_victim)
    save_depth_png(_ramp(), out / "d.png", bits=16)
    assert victim.read_text() == "keep me" and other_victim.read_text() == "keep me too"
    assert not (out / "d.png").is_symlink() and depth_from_image(out / "d.png").shape == (1, 1, 32, 48)
    assert sorted(p.name for p in out.iterdir()) == [".d.png.partial", "d.png"]  # no temporary file left


def test_a_batch_is_not_one_map():
    with pytest.raises(Depth2ImgError):
        depth_to_image(torch.zeros(2, 1, 4, 4))
