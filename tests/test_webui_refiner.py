"""A depth checkpoint as the refiner, against the WebUI imitation. The WebUI samples with one
``p.image_conditioning`` and swaps the model in mid-sampling (sd_samplers_common.apply_refiner, which keeps
it), so what the sampler gets here is what the refiner's steps get; the real WebUI's suite runs the switch."""

import pytest
import torch
from webui_helpers import FakeSDModel, _as_tensor, _expected, _picture, _script

from lib_depth2img import Depth2ImgError


@pytest.fixture()
def refiner_info(webui, depth_checkpoint):
    from modules import sd_models

    info = sd_models.CheckpointInfo(str(depth_checkpoint), "512-depth-ema.safetensors [abc]")
    info.name_for_extra = "512-depth-ema"
    return info


@pytest.fixture()
def plain_base(webui, tiny_estimators, tmp_path):
    """A plain SD 2 model loaded as the base: no depth model; its sampler ignores c_concat."""
    from lib_depth2img.webui import extra_estimators, generation

    webui.shared.sd_model = model = FakeSDModel(None, filename=str(tmp_path / "v2-1_512-ema-pruned.safetensors"))
    generation.forget_depth(model)
    yield model
    webui.shared.sd_model = None
    extra_estimators.HELD.clear()


def _with_refiner(webui, info, script_args=(), pictures=None):
    p = webui.processing.StableDiffusionProcessingImg2Img(pictures or [_picture()], 192, 128, script_args=script_args)
    p.refiner_checkpoint_info, p.refiner_switch_at = info, 0.5  # process_images sets them before scripts' process
    return p


def test_a_depth_refiner_after_a_plain_base_gets_the_refiners_own_depth(webui, plain_base, refiner_info, tiny_hybrid):
    first, second = _picture(), _picture(flip=True)
    p = _with_refiner(webui, refiner_info, pictures=[first, second])
    webui.processing.process_images(p, [_script(webui)])
    expected = torch.cat([_expected(tiny_hybrid, _as_tensor(picture)) for picture in (first, second)])
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)  # [2,1,16,24], not the base's [2,5,1,1] dummy
    assert p.extra_generation_params["Depth2img refiner"] == "512-depth-ema"
    assert p.extra_generation_params["Depth2img depth"] == "init picture"
    assert "img2img_image_conditioning" not in vars(p)  # the shadow is gone after the generation


@pytest.mark.parametrize(("settings", "words"), [
    ({"enabled": False}, "The refiner 512-depth-ema is a depth-to-image model: switch Depth-to-image on"),
    ({}, "the base model is an inpainting one: they need different extra inputs at once"),
])
def test_a_depth_refiner_that_cannot_get_depth_stops_before_any_work(webui, plain_base, refiner_info, settings,
                                                                     words):
    if "inpainting" in words:
        plain_base.model = type("DiffusionWrapper", (), {"conditioning_key": "hybrid"})()
    p = _with_refiner(webui, refiner_info, script_args=[settings])
    with pytest.raises(Depth2ImgError, match=words):
        webui.processing.process_images(p, [_script(webui)])
    assert p.sampled_with == []


def test_a_depth_base_with_a_depth_refiner_keeps_its_own_depth_and_says_so(webui, depth_model, refiner_info,
                                                                            tmp_path):
    import shutil

    model, counter = depth_model
    refiner_info.filename = str(shutil.copy(refiner_info.filename, tmp_path / "another-depth.safetensors"))
    p = _with_refiner(webui, refiner_info)
    webui.processing.process_images(p, [_script(webui)])
    assert counter.batches == [1]  # the base's network, whose conditioning the refiner's steps then get
    assert p.extra_generation_params["Depth2img refiner"] == "512-depth-ema"


def test_txt2img_from_a_map_with_a_depth_refiner_after_a_plain_base(webui, plain_base, refiner_info, tmp_path):
    import base64

    from webui_helpers import _map_png

    encoded = base64.b64encode(_map_png(tmp_path).read_bytes()).decode()
    p = webui.processing.StableDiffusionProcessingTxt2Img(128, 128, script_args=[
        {"depth_source": "upload", "depth_map": encoded, "add_depth_to_results": True}])
    p.refiner_checkpoint_info = refiner_info
    processed = webui.processing.process_images(p, [_script(webui, is_img2img=False)])
    assert len(processed.images) == 2 and p.extra_generation_params["Depth2img refiner"] == "512-depth-ema"
    depth = torch.tensor(list(processed.images[1].convert("L").getdata()), dtype=torch.float).reshape(128, 128)
    assert depth[:, -8:].mean() > depth[:, :8].mean() + 100  # the map's ramp: near on the right
