"""generation.py against the WebUI imitation: the depth of each img2img/inpaint generation, its settings,
what stops a generation, and which network gives the depth."""

import copy

import pytest
import torch
from PIL import Image, ImageDraw
from webui_helpers import FakeSDModel, ForwardCounter, _as_tensor, _expected, _img2img, _mask, _picture, _script


def test_each_picture_of_a_batch_gets_its_own_depth_in_one_forward(webui, full_size_depth_model):
    """End to end with the full-size DPT-Hybrid; the other tests run a small one."""
    model, counter = full_size_depth_model
    first, second = _picture(), _picture(flip=True)
    p, _ = _img2img(webui, [first, second])
    conditioning = p.sampled_with[0]
    assert conditioning.shape == (2, 1, 16, 24)
    assert counter.batches == [2] and model.native_depth_calls == 0 and model.depth_model.wrapper_calls == 0
    expected = _expected(model.depth_model.model, torch.cat([_as_tensor(first), _as_tensor(second)]))  # each alone
    assert torch.allclose(conditioning, expected, atol=1e-3)
    assert not torch.allclose(conditioning[0], conditioning[1], atol=1e-2)


def test_one_picture_with_batch_size_three_runs_one_small_forward(webui, depth_model):
    model, counter = depth_model
    p, _ = _img2img(webui, [_picture()], batch_size=3, n_iter=2)
    assert counter.batches == [1]
    assert len(p.sampled_with) == 2 and all(c.shape == (3, 1, 16, 24) for c in p.sampled_with)
    assert torch.equal(p.sampled_with[0][0], p.sampled_with[0][2])


def test_conditioning_follows_the_init_latent_dtype(webui, depth_model):
    model, _ = depth_model
    original_encode = model.encode
    model.encode = lambda image: original_encode(image).half()
    p, _ = _img2img(webui, [_picture()])
    assert p.sampled_with[0].dtype == torch.float16


@pytest.mark.parametrize("fill", [0, 2, 3])
def test_inpaint_estimates_depth_from_the_untouched_picture(webui, depth_model, fill):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], mask=_mask(), inpainting_fill=fill)
    expected = _expected(model.depth_model.model, _as_tensor(picture))
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)


def test_inpaint_from_the_fill_when_asked(webui, depth_model):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], mask=_mask(), inpainting_fill=0, script_args=[{"depth_from_original": False}])
    untouched = _expected(model.depth_model.model, _as_tensor(picture))
    assert not torch.allclose(p.sampled_with[0], untouched, atol=1e-3)


def test_only_masked_uses_the_crop_the_webui_samples(webui, depth_model):
    model, _ = depth_model
    picture = _picture(256, 384)
    mask = Image.new("L", (384, 256), 0)
    ImageDraw.Draw(mask).rectangle((96, 64, 287, 191), fill=255)  # a 3:2 crop, as the picture, so no borders
    p, _ = _img2img(webui, [picture], mask=mask, inpainting_fill=0, inpaint_full_res=True)
    x, y, w, h = p.paste_to
    assert (w, h) == (192, 128)
    crop = picture.crop((x, y, x + w, y + h)).resize((192, 128), Image.LANCZOS)
    assert torch.allclose(p.sampled_with[0], _expected(model.depth_model.model, _as_tensor(crop)), atol=1e-3)


def test_settings_invert_and_infotext(webui, depth_model):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], script_args=[True, "checkpoint", True])
    expected = _expected(model.depth_model.model, _as_tensor(picture), invert=True)
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
    assert p.extra_generation_params["Depth2img invert"] is True
    assert p.extra_generation_params["Depth2img"] is True


def test_disabled_leaves_the_native_path_alone(webui, depth_model):
    model, counter = depth_model
    p, _ = _img2img(webui, [_picture()], script_args=[False])
    assert model.native_depth_calls == 1 and counter.batches == []
    assert "Depth2img" not in p.extra_generation_params


def test_same_settings_same_conditioning_whatever_ran_between(webui, depth_model):
    first, _ = _img2img(webui, [_picture()])
    _img2img(webui, [_picture(flip=True)], script_args=[{"invert": True}])
    again, _ = _img2img(webui, [_picture()])
    assert torch.equal(first.sampled_with[0], again.sampled_with[0])


def test_processing_object_and_model_are_left_as_found(webui, depth_model):
    model, _ = depth_model
    before = copy.deepcopy(model.depth_model.model.state_dict())
    p, _ = _img2img(webui, [_picture()])
    assert "depth2img_image_conditioning" not in vars(p)
    after = model.depth_model.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert next(model.depth_model.parameters()).dtype == torch.float32


def test_a_failed_depth_pass_still_leaves_p_clean(webui, depth_model):
    model, _ = depth_model
    from lib_depth2img import Depth2ImgError

    model.depth_model.model.depth2img_missing_weights = "put dpt_hybrid-midas-501f0c75.pt in models/midas"
    try:
        p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
        with pytest.raises(Depth2ImgError, match="models/midas"):
            webui.processing.process_images(p, [_script(webui)])
        assert "depth2img_image_conditioning" not in vars(p) and p.sampled_with == []
    finally:
        del model.depth_model.model.depth2img_missing_weights


def test_non_depth_model_costs_nothing_and_says_why_when_asked(webui):
    webui.shared.sd_model = FakeSDModel(None)
    try:
        p, processed = _img2img(webui, [_picture()])
        assert vars(p).keys().isdisjoint({"depth2img_image_conditioning"}) and processed.comments == ""
        _, processed = _img2img(webui, [_picture()], script_args=[{"invert": True}])
        assert "ControlNet" in processed.comments
    finally:
        webui.shared.sd_model = None


def test_move_to_cpu_setting_moves_the_network_only_around_its_use(webui, depth_model):
    from modules import devices

    model, _ = depth_model
    moves = []
    model.depth_model.to = lambda device: moves.append(str(device))  # records; the network stays where it is
    devices.device, webui.shared.opts.data["depth2img_move_to_cpu"] = torch.device("cuda"), True
    try:
        _img2img(webui, [_picture()])
        assert moves == ["cuda", "cpu"]  # to the compute device for the forward, then back to the CPU
        moves.clear()
        webui.shared.opts.data["depth2img_move_to_cpu"] = False
        _img2img(webui, [_picture()])
        assert moves == []
    finally:
        devices.device = devices.cpu
        webui.shared.opts.data.pop("depth2img_move_to_cpu", None)
        del model.depth_model.to


def test_repeated_generation_of_one_picture_runs_one_forward(webui, depth_model):
    from lib_depth2img.webui import generation

    _, counter = depth_model
    first, _ = _img2img(webui, [_picture()])
    again, _ = _img2img(webui, [_picture()], script_args=[{"gamma": 1.5}])
    assert counter.batches == [1]
    generation.forget_depth()
    _img2img(webui, [_picture()])
    assert counter.batches == [1, 1]


def test_the_imitation_swallows_hook_exceptions_as_the_webui_does(webui):
    from modules import errors

    class Failing(webui.script_module.Depth2ImgScript):
        def before_process(self, p, *args):
            raise RuntimeError("a hook failed")

    webui.shared.sd_model = FakeSDModel(None)
    try:
        p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
        processed = webui.processing.process_images(p, [Failing()])  # no exception reaches the caller
        assert len(processed.images) == 1 and errors.reported[-1] == "Error running before_process: " \
                                                                      "scripts/depth2img.py"
    finally:
        webui.shared.sd_model = None


BAD_SETTINGS = [
    ({"no_such_setting": 1}, "no_such_setting", "known: enabled"),
    ({"gamma": 99.0}, "'gamma'", "between 0.1 and 5"),
    ({"gamma": "high"}, "'gamma'", "a number from 0.1 to 5"),
    ({"blur": -1}, "'blur'", "between 0 and 10"),
    ({"depth_source": "no_such_estimator"}, "'depth_source'", "checkpoint, upload, dpt_large"),
    ({"invert": "yes"}, "'invert'", "true or false"),
    ({"depth_source": "upload"}, "'depth_source' is 'upload' but no depth map", "base64"),
    ({"near": 0.2, "far": 0.5}, "'far' and 'near'", "far < near"),
    ([True, "checkpoint", False, True, False, 1.0, 0.0, 1.0, 0.0, None, "", None, "crop", "extra"],
     "at most 13 positional",
     "enabled, depth_source"),
]


@pytest.mark.parametrize(("args", "names", "accepts"), BAD_SETTINGS)
def test_a_bad_setting_stops_the_generation_with_its_name(webui, depth_model, tmp_path, args, names, accepts):
    """Raised in the hook, the WebUI would log it and generate with its own depth: it must reach the person."""
    from lib_depth2img import Depth2ImgError

    _, counter = depth_model
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128,
                                                          script_args=args if isinstance(args, list) else [args])
    with pytest.raises(Depth2ImgError) as error:
        webui.processing.process_images(p, [_script(webui)], outpath=str(tmp_path))
    assert names in str(error.value) and accepts in str(error.value)
    assert p.sampled_with == [] and counter.batches == [] and list(tmp_path.iterdir()) == []  # nothing made
    assert "init" not in vars(p) and "depth2img_image_conditioning" not in vars(p)
    good, _ = _img2img(webui, [_picture()])  # and the next generation is the one it would have been
    expected = _expected(depth_model[0].depth_model.model, _as_tensor(_picture()))
    assert torch.allclose(good.sampled_with[0], expected, atol=1e-3)


def test_a_bad_xyz_value_stops_the_generation_too(webui, depth_model):
    from lib_depth2img import Depth2ImgError
    from lib_depth2img.webui import generation

    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
    setattr(p, generation.XYZ_OVERRIDES_ATTRIBUTE, {"gamma": 50.0})
    with pytest.raises(Depth2ImgError, match="'gamma'"):
        webui.processing.process_images(p, [_script(webui)])
    assert p.sampled_with == []


def test_a_bad_setting_stops_even_without_a_depth_model(webui):
    from lib_depth2img import Depth2ImgError

    webui.shared.sd_model = FakeSDModel(None)
    try:
        p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[{"gamma": 99}])
        with pytest.raises(Depth2ImgError, match="'gamma'"):
            webui.processing.process_images(p, [_script(webui)])
        assert p.sampled_with == []
    finally:
        webui.shared.sd_model = None


def test_a_network_never_filled_from_the_checkpoint_is_not_used(webui, depth_checkpoint, tiny_estimators,
                                                                  tiny_hybrid):
    """reForge and Forge Classic build ldm's MiDaS without loading the checkpoint's weights into it (an
    interrupted load can leave it so too): depth must still be the checkpoint's, from our own estimator."""
    from lib_depth2img.estimators import create_estimator
    from lib_depth2img.webui import extra_estimators, generation

    torch.manual_seed(0)
    empty = create_estimator("dpt_hybrid")  # as built, never loaded
    model = FakeSDModel(empty, filename=str(depth_checkpoint))
    webui.shared.sd_model = model
    generation.forget_depth(model)
    counter = ForwardCounter(empty)
    try:
        p, _ = _img2img(webui, [_picture()])
        assert counter.batches == []  # the empty network never ran
        expected = _expected(tiny_hybrid, _as_tensor(_picture()))
        assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
        assert list(extra_estimators.HELD.loaded)[0][:2] == ("checkpoint", str(depth_checkpoint))
        assert next(iter(extra_estimators.HELD.loaded.values())).estimator_name == "dpt_hybrid"
    finally:
        counter.handle.remove()
        extra_estimators.HELD.clear()
        webui.shared.sd_model = None


def test_a_network_filled_from_the_checkpoint_is_reused_not_copied(webui, depth_model):
    from lib_depth2img.webui import extra_estimators

    _, counter = depth_model
    _img2img(webui, [_picture()])
    assert counter.batches == [1] and extra_estimators.HELD.loaded == {}
