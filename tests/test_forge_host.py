"""The extension in Forge, against the imitation in tests/forge_imitation (on top of tests/webui_imitation):
a model loaded lazily, taken for an inpainting model, with no MiDaS network and no ldm."""

import base64
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reference import conditioning_by_the_rule, depth_by_the_rule, synthetic_image

ROOT = Path(__file__).parent.parent
IMITATIONS = [Path(__file__).parent / "forge_imitation", Path(__file__).parent / "webui_imitation"]


@pytest.fixture(scope="module")
def forge():
    """Imports the imitations and loads scripts/depth2img.py as Forge would."""
    sys.path[:0] = [str(path) for path in IMITATIONS]
    try:
        import forge_processing
        from modules import shared

        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script_module)
        yield type("Forge", (), {"processing": forge_processing, "shared": shared, "script_module": script_module})
    finally:
        for path in IMITATIONS:
            sys.path.remove(str(path))
        imitated = ("modules", "ldm", "modules_forge", "forge_processing")
        for name in [n for n in sys.modules if n.split(".")[0] in imitated
                     or n == "depth2img_script" or n.startswith("lib_depth2img.webui")]:
            del sys.modules[name]


class ForgeModel:
    """What huggingface_guess makes of 512-depth-ema: SD 2, a 5-channel UNet taken for inpainting, no depth_model."""

    def __init__(self, filename: str, in_channels: int = 5):
        self.is_inpaint, self.is_sd2 = in_channels > 4, True
        unet = type("UNet", (), {"in_channels": in_channels})()
        self.forge_objects = type("Objects", (), {"unet": type("Patcher", (), {
            "model": type("KModel", (), {"diffusion_model": unet})()})()})()
        self.sd_checkpoint_info = type("Info", (), {"filename": filename, "name_for_extra": Path(filename).stem})()

    def encode(self, image):
        return torch.nn.functional.avg_pool2d(image, 8).repeat(1, 2, 1, 1)[:, :4]


def _lazily_loaded(forge, checkpoint):
    from lib_depth2img.webui import extra_estimators, generation

    generation.forget_depth()
    forge.shared.sd_model = forge.processing.FakeInitialModel()  # nothing loads until a generation asks
    yield ForgeModel(str(checkpoint))
    extra_estimators.HELD.clear()


@pytest.fixture()
def depth_model(forge, tiny_estimators, tiny_depth_checkpoint_file):
    """The depth checkpoint with the small DPT-Hybrid's weights, which the registry then builds."""
    yield from _lazily_loaded(forge, tiny_depth_checkpoint_file)


@pytest.fixture()
def full_size_depth_model(forge, depth_checkpoint_file):
    yield from _lazily_loaded(forge, depth_checkpoint_file)


def _picture(flip=False):
    pixels = (synthetic_image(128, 192) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels[:, ::-1]) if flip else pixels)


def _script(forge, is_img2img=True):
    script = forge.script_module.Depth2ImgScript()
    script.is_img2img = is_img2img
    return script


def _img2img(forge, model, pictures, script_args=()):
    p = forge.processing.StableDiffusionProcessingImg2Img(pictures, 192, 128, script_args=script_args,
                                                          model_to_load=model)
    return p, forge.processing.process_images(p, [_script(forge)])


def _depth(estimator, picture):
    """By MiDaS's input rule, written out: DPT-Hybrid takes a 192x128 picture at 384x256."""
    tensor = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    return depth_by_the_rule(estimator, tensor, (256, 384))


def _expected(estimator, picture):
    return conditioning_by_the_rule(_depth(estimator, picture), (16, 24))


def test_the_extension_knows_it_is_in_forge_and_imports_no_ldm(forge):
    from lib_depth2img.webui import generation

    assert generation.HOST.name == "Forge"
    assert not [name for name in sys.modules if name.split(".")[0] == "ldm"]


def test_without_the_extension_forge_fails_on_the_channels(forge, depth_model):
    """The imitation's own failure, as real Forge's: the reason this host needs the extension."""
    p = forge.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, model_to_load=depth_model)
    with pytest.raises(forge.processing.ChannelError, match="to have 5 channels, but got 9"):
        forge.processing.process_images(p, [])


def test_img2img_gets_the_checkpoints_depth_from_the_file(forge, full_size_depth_model, hybrid_estimator):
    """End to end with the full-size DPT-Hybrid; the other tests run a small one."""
    depth_model = full_size_depth_model
    p, _ = _img2img(forge, depth_model, [_picture(), _picture(flip=True)])
    conditioning = p.sampled_with[0]
    assert conditioning.shape == (2, 1, 16, 24)  # [B,1,h,w]: the UNet gets 4 + 1 channels
    expected = torch.cat([_expected(hybrid_estimator, picture) for picture in (_picture(), _picture(flip=True))])
    assert torch.allclose(conditioning, expected, atol=1e-3)
    assert not torch.allclose(conditioning[0], conditioning[1], atol=1e-2)
    assert depth_model.is_inpaint is True  # the host's model is left as it was found
    assert "img2img_image_conditioning" not in vars(p) and "Depth2img" in p.extra_generation_params


def test_txt2img_is_stopped_with_words(forge, depth_model):
    from lib_depth2img import Depth2ImgError

    p = forge.processing.StableDiffusionProcessingTxt2Img(64, 64, model_to_load=depth_model)
    with pytest.raises(Depth2ImgError, match="txt2img with a depth model needs the depth to keep"):
        forge.processing.process_images(p, [_script(forge, is_img2img=False)])
    assert p.sampled_with == []


def _base64(path: Path) -> str:
    """A map as the API sends it: the file's bytes in base64 (a path is never read)."""
    return base64.b64encode(path.read_bytes()).decode()


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_txt2img_from_a_depth_map_with_hires_fix_feeds_forges_unet_five_channels(forge, depth_model, tmp_path,
                                                                                  upscaler):
    import cv2

    ramp = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (64, 1))
    cv2.imwrite(str(tmp_path / "map.png"), ramp)
    p = forge.processing.StableDiffusionProcessingTxt2Img(
        64, 64, enable_hr=True, hr_upscaler=upscaler, model_to_load=depth_model,
        script_args=[{"depth_source": "upload", "depth_map": _base64(tmp_path / "map.png")}])
    forge.processing.process_images(p, [_script(forge, is_img2img=False)])
    (_, first), (_, hires) = p.sampled_with
    assert first.shape == (1, 5, 8, 8) and hires.shape == (1, 5, 16, 16)
    assert hires[0, 4, :, -1].mean() > hires[0, 4, :, 0].mean() + 1  # the ramp: near on the right


def test_switched_off_with_a_depth_model_says_so_instead_of_the_channel_error(forge, depth_model):
    from lib_depth2img import Depth2ImgError

    p = forge.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[{"enabled": False}],
                                                          model_to_load=depth_model)
    with pytest.raises(Depth2ImgError, match="Forge has no depth path of its own: switch Depth-to-image on"):
        forge.processing.process_images(p, [_script(forge)])
    assert p.sampled_with == []


def test_other_models_are_left_alone(forge, tmp_path):
    from safetensors.torch import save_file

    plain = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 4, 3, 3)}, str(plain))
    p, _ = _img2img(forge, ForgeModel(str(plain), in_channels=4), [_picture()])
    assert p.sampled_with[0].shape == (1, 5, 1, 1)  # Forge's own dummy, dropped before the UNet


def test_an_uploaded_map_and_a_bad_setting(forge, depth_model, tmp_path):
    from lib_depth2img import Depth2ImgError

    ramp = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "map.png")
    p, _ = _img2img(forge, depth_model, [_picture()], [{"depth_source": "upload",
                                                        "depth_map": _base64(tmp_path / "map.png")}])
    row = p.sampled_with[0][0, 0, 8]
    assert bool((row[1:] >= row[:-1] - 1e-4).all()) and row[-1] > row[0]  # near on the right, as the map says
    p = forge.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, script_args=[{"gamma": 99}],
                                                          model_to_load=depth_model)
    with pytest.raises(Depth2ImgError, match="'gamma'"):
        forge.processing.process_images(p, [_script(forge)])


def test_preview_before_forge_has_loaded_any_model(forge, depth_model, tiny_hybrid):
    """Forge loads the model at the first generation: Preview depth works from the checkpoint picked."""
    from modules import sd_models

    from lib_depth2img.webui import preview

    assert not hasattr(forge.shared.sd_model, "sd_checkpoint_info")  # Forge's stand-in, before any load
    title = "512-depth-ema.safetensors"
    sd_models.checkpoint_aliases[title] = sd_models.CheckpointInfo(depth_model.sd_checkpoint_info.filename, title)
    forge.shared.opts.data["sd_model_checkpoint"] = title
    try:
        pictures = [None] * len(preview.picture_inputs())
        pictures[0] = _picture()
        image, message = preview.preview_depth(0, *pictures, True, "checkpoint")
        assert image is not None and "192x128" in message
        from lib_depth2img.depth_image import depth_to_image

        expected = np.asarray(depth_to_image(_depth(tiny_hybrid, _picture())[0]).resize(image.size), dtype=float)
        assert np.abs(np.asarray(image, dtype=float) - expected).mean() < 1
    finally:
        sd_models.checkpoint_aliases.clear()
        forge.shared.opts.data.pop("sd_model_checkpoint")


def test_a_checkpoint_without_depth_weights_takes_the_release_file_or_says_which(forge, tmp_path, tiny_estimators,
                                                                                 tiny_hybrid_state):
    from modules import paths_internal
    from safetensors.torch import save_file

    from lib_depth2img import Depth2ImgError

    pruned = tmp_path / "pruned-depth.safetensors"  # a pruning tool dropped depth_model.*: Forge drops it anyway
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}, str(pruned))
    model = ForgeModel(str(pruned))
    paths_internal.models_path, paths_internal.extensions_dir = str(tmp_path / "models"), str(tmp_path / "ext")
    try:
        p = forge.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128, model_to_load=model)
        with pytest.raises(Depth2ImgError) as error:
            forge.processing.process_images(p, [_script(forge)])
        assert str(error.value).startswith("pruned-depth carries no MiDaS weights.")
        message = str(error.value)
        assert "dpt_hybrid-midas-501f0c75.pt" in message and str(tmp_path / "models" / "midas") in message
        (tmp_path / "models" / "midas").mkdir(parents=True)
        torch.save(tiny_hybrid_state, tmp_path / "models" / "midas" / "dpt_hybrid-midas-501f0c75.pt")
        from lib_depth2img.estimators import create_estimator
        from lib_depth2img.weights import load_estimator_weights

        release = create_estimator("dpt_hybrid")
        load_estimator_weights(release, tiny_hybrid_state)
        p, _ = _img2img(forge, model, [_picture()])
        assert torch.allclose(p.sampled_with[0], _expected(release, _picture()), atol=1e-3)
    finally:
        paths_internal.models_path, paths_internal.extensions_dir = "models", "extensions"
