"""The adapter and the extension's script, against the small WebUI imitation in tests/webui_imitation."""

import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from reference import synthetic_image

from lib_depth2img.generation_args import DepthArgs

ROOT = Path(__file__).parent.parent
IMITATION = Path(__file__).parent / "webui_imitation"


@pytest.fixture(scope="module")
def webui():
    """Imports the imitation as `modules`/`ldm` and loads scripts/depth2img.py as the WebUI would."""
    sys.path.insert(0, str(IMITATION))
    try:
        from modules import processing, script_callbacks, shared

        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script_module)
        yield type("WebUI", (), {"processing": processing, "shared": shared, "callbacks": script_callbacks,
                                 "script_module": script_module})
    finally:
        sys.path.remove(str(IMITATION))
        for name in [n for n in sys.modules if n.split(".")[0] in ("modules", "ldm") or n == "depth2img_script"]:
            del sys.modules[name]
        for name in [n for n in sys.modules if n.startswith("lib_depth2img.webui")]:
            del sys.modules[name]


class DepthModelWrapper(torch.nn.Module):
    """ldm's MiDaSInference: the network under `.model`; calling the wrapper is the native path."""

    def __init__(self, network):
        super().__init__()
        self.model = network
        self.wrapper_calls = 0

    def forward(self, x):
        self.wrapper_calls += 1
        return self.model(x).unsqueeze(1)


class FakeSDModel:
    def __init__(self, network=None, filename="512-depth-ema.safetensors"):
        self.depth_model = DepthModelWrapper(network) if network is not None else None
        self.native_depth_calls = 0
        self.sd_checkpoint_info = type("Info", (), {"filename": filename, "name_for_extra": Path(filename).stem})()

    def encode(self, image):
        return torch.nn.functional.avg_pool2d(image, 8).repeat(1, 2, 1, 1)[:, :4]


class ForwardCounter:
    def __init__(self, module):
        self.batches = []
        self.handle = module.register_forward_hook(lambda m, i, o: self.batches.append(i[0].shape[0]))


@pytest.fixture(scope="session")
def depth_checkpoint(depth_checkpoint_file) -> Path:
    """The file the model was loaded from: the WebUI always has one."""
    return depth_checkpoint_file


@pytest.fixture()
def depth_model(webui, hybrid_estimator, depth_checkpoint):
    from lib_depth2img.webui import generation

    model = FakeSDModel(hybrid_estimator, filename=str(depth_checkpoint))
    webui.shared.sd_model = model
    generation.forget_depth(model)  # as on_model_loaded does: each test starts with a fresh checkpoint
    counter = ForwardCounter(hybrid_estimator)
    yield model, counter
    counter.handle.remove()
    webui.shared.sd_model = None


def _script(webui, is_img2img=True):
    script = webui.script_module.Depth2ImgScript()
    script.is_img2img = is_img2img
    return script


def _picture(height=128, width=192, flip=False):
    pixels = (synthetic_image(height, width) * 255).astype(np.uint8)
    return Image.fromarray(pixels[:, ::-1].copy() if flip else pixels)


def _img2img(webui, pictures, script_args=(), **kwargs):
    p = webui.processing.StableDiffusionProcessingImg2Img(pictures, 192, 128, script_args=script_args, **kwargs)
    processed = webui.processing.process_images(p, [_script(webui)])
    return p, processed


def _expected(webui, estimator, picture_tensor, latent=(16, 24), invert=False):
    from lib_depth2img.adjustments import DepthAdjustments
    from lib_depth2img.estimators import input_spec_for
    from lib_depth2img.pipeline import condition_pictures

    return condition_pictures(estimator, picture_tensor, latent, input_spec=input_spec_for("dpt_hybrid"),
                              adjustments=DepthAdjustments(invert=invert)).conditioning


def _as_tensor(picture):
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_each_picture_of_a_batch_gets_its_own_depth_in_one_forward(webui, depth_model):
    model, counter = depth_model
    first, second = _picture(), _picture(flip=True)
    p, _ = _img2img(webui, [first, second])
    conditioning = p.sampled_with[0]
    assert conditioning.shape == (2, 1, 16, 24)
    assert counter.batches == [2] and model.native_depth_calls == 0 and model.depth_model.wrapper_calls == 0
    for index, picture in enumerate([first, second]):
        expected = _expected(webui, model.depth_model.model, _as_tensor(picture))
        assert torch.allclose(conditioning[index:index + 1], expected, atol=1e-3)
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


def _mask(box=(40, 30, 150, 100)):
    mask = Image.new("L", (192, 128), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


@pytest.mark.parametrize("fill", [0, 2, 3])
def test_inpaint_estimates_depth_from_the_untouched_picture(webui, depth_model, fill):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], mask=_mask(), inpainting_fill=fill)
    expected = _expected(webui, model.depth_model.model, _as_tensor(picture))
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)


def test_inpaint_from_the_fill_when_asked(webui, depth_model):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], mask=_mask(), inpainting_fill=0, script_args=[{"depth_from_original": False}])
    untouched = _expected(webui, model.depth_model.model, _as_tensor(picture))
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
    assert torch.allclose(p.sampled_with[0], _expected(webui, model.depth_model.model, _as_tensor(crop)), atol=1e-3)


def test_settings_invert_and_infotext(webui, depth_model):
    model, _ = depth_model
    picture = _picture()
    p, _ = _img2img(webui, [picture], script_args=[True, "checkpoint", True])
    expected = _expected(webui, model.depth_model.model, _as_tensor(picture), invert=True)
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
    assert p.extra_generation_params["Depth2img invert"] is True
    assert p.extra_generation_params["Depth2img"] is True


def test_depth_maps_added_to_the_results_when_asked(webui, depth_model):
    _, processed = _img2img(webui, [_picture(), _picture(flip=True)], script_args=[{"add_depth_to_results": True}])
    assert len(processed.images) == 4
    assert processed.images[2].mode == "L" and processed.images[2].size == (192, 128)


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


def test_offline_loader_builds_without_downloading(webui, tmp_path):
    from ldm.modules.midas import api

    api.calls.clear()
    missing = str(tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    api.ISL_PATHS["dpt_hybrid"] = missing
    network, _ = api.load_model("dpt_hybrid")
    assert api.calls == [("build", None)] and api.ISL_PATHS["dpt_hybrid"] == missing
    assert network.depth2img_expected_weights_file == missing
    Path(missing).write_bytes(b"")
    api.calls.clear()
    api.load_model("dpt_hybrid")
    assert api.calls == [("build", missing)]  # the file is there: the WebUI's own path, unchanged


def test_checkpoint_without_depth_weights_says_which_file_to_put_where(webui, tmp_path, hybrid_estimator):
    from safetensors.torch import save_file

    from lib_depth2img.webui import model_loading

    checkpoint = tmp_path / "finetune.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}, str(checkpoint))
    network = copy.deepcopy(hybrid_estimator)
    network.depth2img_expected_weights_file = "/webui/models/midas/dpt_hybrid-midas-501f0c75.pt"
    model = FakeSDModel(network, filename=str(checkpoint))
    assert model_loading.check_loaded_depth_weights in webui.callbacks.callbacks["model_loaded"]
    model_loading.check_loaded_depth_weights(model)
    assert network.depth2img_missing_weights == ("finetune.safetensors carries no MiDaS weights and "
                                                 "dpt_hybrid-midas-501f0c75.pt is missing: put that file in "
                                                 "/webui/models/midas, then load the checkpoint again.")
    with_weights = tmp_path / "512-depth-ema.safetensors"
    save_file({"depth_model.model.pretrained.model.patch_embed.backbone.stem.conv.weight": torch.zeros(1)},
              str(with_weights))
    model.sd_checkpoint_info.filename = str(with_weights)  # the WebUI reuses the model for the next checkpoint
    model_loading.check_loaded_depth_weights(model)
    assert not hasattr(network, "depth2img_missing_weights")


def test_xyz_axis_values_override_the_script_args(webui):
    from lib_depth2img.generation_args import DepthArgs
    from lib_depth2img.webui import generation, ui

    p = webui.processing.StableDiffusionProcessingImg2Img([], 64, 64)
    ui._xyz_apply("invert")(p, "True", ["True", "False"])
    assert generation.args_for(p, [True]) == DepthArgs(invert=True)


def test_setting_registered_in_its_own_section(webui):
    from lib_depth2img.webui import ui

    assert ui.add_settings in webui.callbacks.callbacks["ui_settings"]
    ui.add_settings()
    assert webui.shared.opts.data_labels["depth2img_move_to_cpu"].section == ("depth2img", "Depth-to-image")


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


def test_depth_maps_in_results_carry_their_pictures_infotexts(webui, depth_model):
    _, processed = _img2img(webui, [_picture(), _picture(flip=True)], script_args=[{"add_depth_to_results": True}])
    assert processed.infotexts == ["picture 0", "picture 1", "picture 0", "picture 1"]


def test_depth_maps_saved_beside_their_pictures_when_the_setting_says_so(webui, depth_model, tmp_path):
    model, _ = depth_model
    first, second = _picture(), _picture(flip=True)
    p = webui.processing.StableDiffusionProcessingImg2Img([first, second], 192, 128)
    webui.shared.opts.data["depth2img_save_depth_maps"] = True
    try:
        webui.processing.process_images(p, [_script(webui)], outpath=str(tmp_path))
    finally:
        webui.shared.opts.data.pop("depth2img_save_depth_maps")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["00000-1234-depth.png", "00000-1234.png",
                                                          "00001-1234-depth.png", "00001-1234.png"]
    from lib_depth2img.depth_image import depth_to_image
    from lib_depth2img.estimators import input_spec_for
    from lib_depth2img.pipeline import condition_pictures

    depth = condition_pictures(model.depth_model.model, _as_tensor(second), (16, 24),
                               input_spec=input_spec_for("dpt_hybrid")).depth[0]
    expected = np.asarray(depth_to_image(depth).resize((192, 128)), dtype=float)
    saved = np.asarray(Image.open(tmp_path / "00001-1234-depth.png"), dtype=float)
    assert np.abs(saved - expected).mean() < 2  # batched vs single forward differ in the last bits only


def test_nothing_saved_without_the_setting(webui, depth_model, tmp_path):
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
    webui.processing.process_images(p, [_script(webui)], outpath=str(tmp_path))
    assert [f.name for f in tmp_path.iterdir()] == ["00000-1234.png"]


def _preview(picture, tab=0, settings=(True, "checkpoint", False, True, False)):  # positional, as the UI
    from lib_depth2img.webui import preview

    pictures = [None] * len(preview.picture_inputs())
    pictures[tab] = picture
    return preview.preview_depth(tab, *pictures, *settings)


def test_preview_shows_the_depth_of_the_current_tabs_picture(webui, depth_model):
    model, counter = depth_model
    picture = _picture()
    image, message = _preview(picture)
    assert image.size == picture.size and image.mode == "L" and "192x128" in message
    from lib_depth2img.depth_image import depth_to_image
    from lib_depth2img.estimators import input_spec_for
    from lib_depth2img.pipeline import condition_pictures

    depth = condition_pictures(model.depth_model.model, _as_tensor(picture), (16, 24),
                               input_spec=input_spec_for("dpt_hybrid")).depth[0]
    expected = np.asarray(depth_to_image(depth).resize(picture.size), dtype=int)
    difference = np.abs(np.asarray(image, dtype=int) - expected)
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01  # float noise can flip a rounding
    inverted, _ = _preview(picture, settings=(True, "checkpoint", True, True, False))
    assert np.abs(np.asarray(inverted, dtype=int) + np.asarray(image, dtype=int) - 255).mean() < 2
    inpaint, _ = _preview({"image": picture, "mask": _mask()}, tab=2)
    assert np.array_equal(np.asarray(inpaint), np.asarray(image))


def test_preview_says_what_is_missing(webui, depth_model):
    from lib_depth2img.webui import preview

    assert _preview(None) == (None, preview.NO_PICTURE)
    assert _preview(_picture(), tab=-1) == (None, preview.NO_PICTURE)
    webui.shared.sd_model = FakeSDModel(None)
    image, message = _preview(_picture())
    assert image is None and "depth checkpoint" in message


def test_checkpoint_route_answers_only_for_listed_checkpoints(webui, tmp_path):
    from modules import sd_models
    from safetensors.torch import save_file

    from lib_depth2img.webui import routes

    path = tmp_path / "512-depth-ema.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}, str(path))
    sd_models.checkpoint_aliases["512-depth-ema.safetensors [abc]"] = sd_models.CheckpointInfo(
        str(path), "512-depth-ema.safetensors [abc]")
    verdict = routes.checkpoint_verdict("512-depth-ema.safetensors [abc]")
    assert verdict["is_depth"] is True and verdict["estimator"] == "dpt_hybrid" and "5 input" in verdict["reason"]
    assert routes.checkpoint_verdict(str(path)) is None  # a path is never looked up
    assert routes.checkpoint_verdict("../../etc/passwd") is None


def _map_png(tmp_path, name="map.png", flip=False):
    import cv2

    ramp = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (64, 1))
    path = tmp_path / name
    cv2.imwrite(str(path), ramp[:, ::-1] if flip else ramp)
    return path


def test_uploaded_map_conditions_without_any_forward(webui, depth_model, tmp_path):
    import base64

    from lib_depth2img.pipeline import condition_depth_map
    from lib_depth2img.user_depth import read_depth_map

    _, counter = depth_model
    path = _map_png(tmp_path)
    encoded = base64.b64encode(path.read_bytes()).decode()
    p, _ = _img2img(webui, [_picture()], script_args=[{"depth_source": "upload", "depth_map": encoded, "gamma": 2}])
    expected = condition_depth_map(read_depth_map(path), (128, 192), (16, 24),
                                   adjustments=DepthArgs(gamma=2.0).adjustments()).conditioning
    assert counter.batches == [] and torch.allclose(p.sampled_with[0], expected)
    assert p.extra_generation_params["Depth2img source"] == "upload"
    assert p.extra_generation_params["Depth2img gamma"] == 2.0
    assert not any(key.split()[-1] == "map" for key in p.extra_generation_params)  # the map itself is not infotext


def test_upload_without_a_map_is_a_clear_error(webui, depth_model):
    from lib_depth2img import Depth2ImgError

    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128,
                                                          script_args=[{"depth_source": "upload"}])
    with pytest.raises(Depth2ImgError, match="no depth map was given"):
        webui.processing.process_images(p, [_script(webui)])


def test_batch_folder_maps_matched_by_file_name(webui, depth_model, tmp_path):
    from lib_depth2img import Depth2ImgError

    maps = tmp_path / "maps"
    maps.mkdir()
    _map_png(maps, "street.png"), _map_png(maps, "house.tif", flip=True)
    street, house = _picture(), _picture(flip=True)
    street.filename, house.filename = str(tmp_path / "street.jpg"), str(tmp_path / "house.webp")
    settings = {"depth_source": "upload", "depth_map_folder": str(maps)}
    p, _ = _img2img(webui, [street, house], script_args=[settings])
    assert torch.allclose(p.sampled_with[0][0], p.sampled_with[0][1].flip(-1), atol=1e-5)  # each its own map
    stranger = _picture()
    stranger.filename = str(tmp_path / "stranger.png")
    p = webui.processing.StableDiffusionProcessingImg2Img([stranger], 192, 128, script_args=[settings])
    with pytest.raises(Depth2ImgError, match="No depth map named stranger"):
        webui.processing.process_images(p, [_script(webui)])


def test_repeated_generation_of_one_picture_runs_one_forward(webui, depth_model):
    from lib_depth2img.webui import generation

    _, counter = depth_model
    first, _ = _img2img(webui, [_picture()])
    again, _ = _img2img(webui, [_picture()], script_args=[{"gamma": 1.5}])
    assert counter.batches == [1]
    generation.forget_depth()
    _img2img(webui, [_picture()])
    assert counter.batches == [1, 1]


def test_preview_of_an_uploaded_map_with_adjustments(webui, depth_model, tmp_path):
    from lib_depth2img.webui import preview

    path = _map_png(tmp_path)
    settings = DepthArgs(depth_source="upload", depth_map=path.read_bytes(), invert=True).to_script_args()
    image, message = preview.preview_depth(0, _picture(), None, None, None, None, *settings)
    assert image.size == (192, 128) and "uploaded depth map" in message
    assert np.asarray(image)[:, 0].mean() > 250 and np.asarray(image)[:, -1].mean() < 5  # inverted ramp
    no_map = DepthArgs(depth_source="upload").to_script_args()
    assert preview.preview_depth(0, _picture(), None, None, None, None, *no_map) == (None, preview.NO_MAP)


@pytest.fixture()
def models_dir(webui, tmp_path):
    from modules import paths_internal

    paths_internal.models_path, paths_internal.extensions_dir = str(tmp_path / "models"), str(tmp_path / "ext")
    yield tmp_path
    paths_internal.models_path, paths_internal.extensions_dir = "models", "extensions"


def _save_depth_anything(folder):
    from reference import reference_layout, rule_weights

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(rule_weights(reference_layout("depth-anything-v2-vits.json")), folder / "depth_anything_v2_vits.pth")


def test_another_estimator_from_a_file_people_already_have(webui, depth_model, models_dir):
    from lib_depth2img import Depth2ImgError
    from lib_depth2img.pipeline import condition_pictures
    from lib_depth2img.webui import extra_estimators

    _, counter = depth_model
    assert extra_estimators.available() == []
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128,
                                                          script_args=[{"depth_source": "depth_anything_v2_vits"}])
    with pytest.raises(Depth2ImgError) as error:
        webui.processing.process_images(p, [_script(webui)])
    assert str(error.value) == (f"Depth source 'depth_anything_v2_vits' (Depth Anything V2 Small) needs its weights "
                                f"file depth_anything_v2_vits.pth: put it in {models_dir / 'models' / 'depth_anything'}"
                                ", or choose another depth source.")
    assert counter.batches == [] and p.sampled_with == []  # stopped before any work
    # ControlNet's download folder counts too: nobody keeps two copies
    _save_depth_anything(models_dir / "ext" / "sd-webui-controlnet" / "annotator" / "downloads" / "depth_anything_v2")
    assert extra_estimators.available() == ["depth_anything_v2_vits"]
    p, _ = _img2img(webui, [_picture()], script_args=[{"depth_source": "depth_anything_v2_vits"}])
    network = extra_estimators.load("depth_anything_v2_vits")
    expected = condition_pictures(network, _as_tensor(_picture()), (16, 24)).conditioning
    assert counter.batches == []  # the checkpoint's MiDaS did not run
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
    assert p.extra_generation_params["Depth2img source"] == "depth_anything_v2_vits"


def test_other_estimators_leave_the_gpu_under_medvram(webui, depth_model, models_dir):
    from lib_depth2img.webui import extra_estimators

    _save_depth_anything(models_dir / "models" / "depth_anything")
    network = extra_estimators.load("depth_anything_v2_vits")
    moves = []
    network.to = lambda *args, **kwargs: moves.append(str(kwargs.get("device", args[0] if args else None))) or network
    from modules import devices

    devices.device, webui.shared.cmd_opts.medvram = torch.device("cuda"), True  # .to records; nothing moves
    try:
        _img2img(webui, [_picture()], script_args=[{"depth_source": "depth_anything_v2_vits"}])
    finally:
        devices.device, webui.shared.cmd_opts.medvram = devices.cpu, False
        del network.to
    assert moves == ["cuda", "cpu"]  # to the compute device for the forward, then off it


def test_batch_tab_pictures_find_their_maps_although_the_tab_drops_file_names(webui, depth_model, tmp_path):
    from modules import img2img

    inputs, maps = tmp_path / "inputs", tmp_path / "maps"
    inputs.mkdir(), maps.mkdir()
    _picture().save(inputs / "street.png")
    _picture(flip=True).save(inputs / "house.png")
    _map_png(maps, "street.png"), _map_png(maps, "house.tiff", flip=True)
    assert img2img.process_batch.depth2img_tracking  # installed when the script loaded
    p = webui.processing.StableDiffusionProcessingImg2Img([], 192, 128, script_args=[
        {"depth_source": "upload", "depth_map_folder": str(maps)}])
    house, street = img2img.process_batch(p, str(inputs), "", "", [_script(webui)])  # sorted: house, street
    assert torch.allclose(street, house.flip(-1), atol=1e-5) and not torch.allclose(street, house)
    from lib_depth2img.webui import batch_names

    assert batch_names.source_name(_picture()) is None  # outside a Batch tab run: no guessing


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
    expected = _expected(webui, depth_model[0].depth_model.model, _as_tensor(_picture()))
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


def test_a_network_never_filled_from_the_checkpoint_is_not_used(webui, depth_checkpoint, hybrid_estimator):
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
        expected = _expected(webui, hybrid_estimator, _as_tensor(_picture()))
        assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
        assert list(extra_estimators._loaded)[0][:2] == ("checkpoint", str(depth_checkpoint))
        assert next(iter(extra_estimators._loaded.values())).estimator_name == "dpt_hybrid"
    finally:
        counter.handle.remove()
        extra_estimators._loaded.clear()
        webui.shared.sd_model = None


def test_a_network_filled_from_the_checkpoint_is_reused_not_copied(webui, depth_model):
    from lib_depth2img.webui import extra_estimators

    _, counter = depth_model
    _img2img(webui, [_picture()])
    assert counter.batches == [1] and extra_estimators._loaded == {}
