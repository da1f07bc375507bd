"""condition_pictures: the whole depth path of one generation, and the settings model."""

import pytest
import torch
import torch.nn.functional as F
from reference import conditioning_by_the_rule, depth_by_the_rule, synthetic_batch

from lib_depth2img import Depth2ImgError
from lib_depth2img.adjustments import DepthAdjustments, invert_depth
from lib_depth2img.generation_args import DepthArgs
from lib_depth2img.pipeline import condition_pictures


def test_conditioning_comes_from_one_resize_of_the_estimator_output(hybrid_estimator):
    """End to end with the full-size DPT-Hybrid, against MiDaS's input rule and the training rule written out."""
    pictures = synthetic_batch(128, 192)
    result = condition_pictures(hybrid_estimator, pictures, (16, 24))
    assert result.depth.shape == (1, 1, 256, 384)  # the estimator's own size for a 192x128 picture: the width x2
    depth = depth_by_the_rule(hybrid_estimator, pictures, (256, 384))
    assert torch.allclose(result.depth, depth, atol=1e-5 * depth.max().item())
    assert torch.allclose(result.conditioning, conditioning_by_the_rule(depth, (16, 24)), atol=1e-5)
    twice = F.interpolate(depth, size=(128, 192), mode="bicubic", align_corners=False)  # via the picture's size
    assert not torch.allclose(result.conditioning, conditioning_by_the_rule(twice, (16, 24)), atol=1e-3)


def test_invert_swaps_near_and_far_within_the_range():
    depth = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    assert torch.equal(invert_depth(depth), torch.tensor([[[[5.0, 4.0], [3.0, 1.0]]]]))
    assert torch.equal(invert_depth(invert_depth(depth)), depth)


def test_inverted_conditioning_is_the_mirror_image(tiny_hybrid):
    pictures = synthetic_batch(128, 128)
    plain = condition_pictures(tiny_hybrid, pictures, (16, 16)).conditioning
    inverted = condition_pictures(tiny_hybrid, pictures, (16, 16),
                                  adjustments=DepthAdjustments(invert=True)).conditioning
    assert torch.allclose(plain + inverted, torch.full_like(plain, plain.max().item() + plain.min().item()), atol=1e-3)


def test_conditioning_dtype_is_the_callers(tiny_hybrid):
    result = condition_pictures(tiny_hybrid, synthetic_batch(64, 64), (8, 8), dtype=torch.float16)
    assert result.conditioning.dtype == torch.float16 and result.depth.dtype == torch.float32


def test_args_positional_named_and_mixed():
    assert DepthArgs.from_script_args([]) == DepthArgs()
    assert DepthArgs.from_script_args([False]).enabled is False
    assert DepthArgs.from_script_args([{"invert": True}]).invert is True
    mixed = DepthArgs.from_script_args([False, {"add_depth_to_results": True}])
    assert (mixed.enabled, mixed.add_depth_to_results) == (False, True)
    assert DepthArgs.from_script_args(DepthArgs(invert=True).to_script_args()) == DepthArgs(invert=True)
    # what the WebUI's API hands over for {"args": [{"invert": true}]}: the dict, then UI defaults
    assert DepthArgs.from_script_args([{"invert": True}, *DepthArgs().to_script_args()[1:]]) == DepthArgs(invert=True)


@pytest.mark.parametrize("bad", [[{"invrt": True}], ["yes"], [True, "midas_v9"], [True] * 9, [{"invert": "yes"}]])
def test_bad_args_are_clear_errors(bad):
    with pytest.raises(Depth2ImgError, match="[Dd]epth-to-image"):
        DepthArgs.from_script_args(bad)


def test_infotext_round_trip():
    args = DepthArgs(invert=True, depth_from_original=False)
    text = {key: str(value) for key, value in args.infotext().items()}
    assert DepthArgs.from_named(DepthArgs.from_infotext(text)) == args
    assert DepthArgs.from_infotext({"Steps": "20"}) == {}


def test_txt2img_infotext_carries_the_fit_and_round_trips():
    args = DepthArgs(depth_source="upload", fit="fill", gamma=2.0)
    txt2img = {key: str(value) for key, value in args.infotext(txt2img=True).items()}
    assert txt2img["Depth2img fit"] == "fill" and "Depth2img from original" not in txt2img
    assert DepthArgs.from_named(DepthArgs.from_infotext(txt2img)) == args
    assert "Depth2img fit" not in args.infotext()  # img2img fits by its own Resize mode


@pytest.mark.parametrize(("values", "words"), [
    ({"fit": "zoom"}, "'fit' must be one of crop, stretch, fill"),
    ({"depth_picture": 3}, "'depth_picture' must be a picture, base64 text or bytes"),
])
def test_new_settings_say_what_they_accept(values, words):
    with pytest.raises(Depth2ImgError, match=words):
        DepthArgs.from_named(values)


def test_txt2img_needs_depth_to_keep_img2img_does_not():
    DepthArgs().check_ready_to_generate()
    with pytest.raises(Depth2ImgError, match="txt2img with a depth model needs the depth to keep"):
        DepthArgs().check_ready_to_generate(txt2img=True)
    DepthArgs(depth_picture="aGVsbG8=").check_ready_to_generate(txt2img=True)
    DepthArgs(depth_source="upload", depth_map="aGVsbG8=").check_ready_to_generate(txt2img=True)
    with pytest.raises(Depth2ImgError, match="no depth map was given"):  # a folder serves the Batch tab only
        DepthArgs(depth_source="upload", depth_map_folder="/maps").check_ready_to_generate(txt2img=True)
