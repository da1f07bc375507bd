"""The nodes against the ComfyUI imitation (tests/comfyui_imitation) and the core: the conditioning is SD2's
training rule at the latent's size on both sides, per picture; the sampler's 5-channel conv receives it; the
depth comes from the checkpoint's own MiDaS or a file, 16-bit maps at full precision, once per picture."""

import re

import numpy as np
import pytest
import torch
from comfyui_helpers import CHECKPOINT, ROOT, FirstConvInputs, depth_model, sample_step, text
from reference import conditioning_by_the_rule, depth_by_the_rule, inverted_by_hand, synthetic_image
from webui_helpers import DPT_INPUT_OF_A_192x128_PICTURE, ForwardCounter

NINE_CHANNELS = r"expected input\[{batch}, 9, 16, 24\] to have 5 channels, but got 9 channels instead"
ADJUSTMENTS = {"invert": False, "near": 1.0, "far": 0.0, "gamma": 1.0, "blur": 0.0}


def _image(flip=False, height=128, width=192) -> torch.Tensor:
    """An IMAGE as ComfyUI's LoadImage gives it: [B,H,W,3] float in [0, 1]."""
    pixels = synthetic_image(height, width)
    return torch.from_numpy(pixels[:, ::-1].copy() if flip else pixels)[None]


def _stretched(depth: torch.Tensor) -> torch.Tensor:
    low, high = depth.amin(dim=(-2, -1), keepdim=True), depth.amax(dim=(-2, -1), keepdim=True)
    return (depth - low) / (high - low)


def _estimate(comfyui, image, estimator="checkpoint", **adjustments):
    return comfyui.node("Depth2ImgEstimate").estimate(image, estimator, CHECKPOINT, **{**ADJUSTMENTS, **adjustments})


def _latents(comfyui, kind: str, batch: int = 1) -> dict:
    """The LATENT of each workflow: txt2img's empty one, img2img's encoded picture, inpaint's with a noise mask."""
    latent = comfyui.nodes.EmptyLatentImage().generate(192, 128, batch)[0]
    if kind != "txt2img":
        latent = {"samples": torch.randn(batch, 4, 16, 24, generator=torch.Generator().manual_seed(3))}
    if kind == "inpaint":
        mask = torch.zeros(1, 128, 192)
        mask[:, 30:100, 40:150] = 1
        latent["noise_mask"] = mask
    return latent


def test_without_depth_conditioning_the_depth_model_fails_with_the_9_channel_error(comfyui):
    """As ComfyUI does with 512-depth-ema: a plain prompt makes it feed mask + masked latent to a 5-channel conv."""
    model = depth_model()
    with pytest.raises(RuntimeError, match=NINE_CHANNELS.format(batch=2)):
        sample_step(model, text(1), text(2), _latents(comfyui, "img2img"))


def test_depth_on_the_positive_side_alone_still_fails(comfyui, depth_checkpoint_in_comfyui):
    model = depth_model()
    _, depth = _estimate(comfyui, _image())
    positive, _ = comfyui.node("Depth2ImgConditioning").condition(text(1), text(2), depth, _latents(comfyui, "img2img"))
    with pytest.raises(RuntimeError, match=NINE_CHANNELS.format(batch=1)):  # the negative runs apart, inpaint-style
        sample_step(model, positive, text(2), _latents(comfyui, "img2img"))


@pytest.mark.parametrize("kind", ["txt2img", "img2img", "inpaint"])
def test_both_sides_carry_the_training_rules_conditioning_into_the_unet(comfyui, depth_checkpoint_in_comfyui, kind):
    model, latent = depth_model(), _latents(comfyui, kind)
    latent_before = {key: value.clone() for key, value in latent.items()}
    _, depth = _estimate(comfyui, _image())
    positive, negative = comfyui.node("Depth2ImgConditioning").condition(text(1), text(2), depth, latent)
    expected = conditioning_by_the_rule(depth[:, None], (16, 24))
    for side in (positive, negative):
        assert len(side) == 1 and torch.allclose(side[0][1]["noise_concat"], expected, atol=1e-6)
    assert "noise_concat" not in text(1)[0][1]  # the inputs are left as they were
    seen = FirstConvInputs(model)
    sample_step(model, positive, negative, latent)
    assert len(seen.calls) == 1 and seen.calls[0].shape == (2, 5, 16, 24)  # cond and uncond in one batch
    for fifth_channel in seen.calls[0][:, 4:]:
        assert torch.allclose(fifth_channel, expected[0], atol=1e-6)
    assert latent.keys() == latent_before.keys() and all(torch.equal(latent[k], latent_before[k]) for k in latent)


def test_the_depth_is_the_checkpoints_own_midas_read_from_its_file(comfyui, depth_checkpoint_in_comfyui, tiny_hybrid):
    """ComfyUI drops depth_model.* when it loads the checkpoint; nothing is in models/midas."""
    image = _image()
    depth_image, depth = _estimate(comfyui, image)
    by_the_rule = depth_by_the_rule(tiny_hybrid, image.movedim(-1, 1), DPT_INPUT_OF_A_192x128_PICTURE)
    assert depth.shape == (1, 256, 384)  # at the estimator's resolution: the conditioning resizes it once
    assert torch.allclose(depth, _stretched(by_the_rule)[:, 0], atol=1e-4)
    assert depth_image.shape == (1, 256, 384, 3) and torch.equal(depth_image[..., 1], depth)
    # the stretch to [0, 1] moves the conditioning from the raw depth's by the rule's +0.001 at most
    raw = conditioning_by_the_rule(by_the_rule, (16, 24))
    conditioning = comfyui.node("Depth2ImgConditioning").condition(text(1), text(2), depth,
                                                                   _latents(comfyui, "img2img"))[0][0][1]
    assert (conditioning["noise_concat"] - raw).abs().max() < 2.5e-3
    inverted, _ = _estimate(comfyui, image, invert=True)
    assert torch.allclose(inverted[..., 0], _stretched(inverted_by_hand(by_the_rule))[:, 0], atol=1e-4)


def test_a_batch_gets_each_pictures_own_depth(comfyui, depth_checkpoint_in_comfyui):
    images = torch.cat([_image(), _image(flip=True)])
    _, depth = _estimate(comfyui, images)
    alone = [_estimate(comfyui, image[None])[1] for image in images]
    assert not torch.allclose(depth[0], depth[1], atol=1e-2)
    latent = _latents(comfyui, "img2img", batch=2)
    positive, negative = comfyui.node("Depth2ImgConditioning").condition(text(1, 2), text(2, 2), depth, latent)
    conditioning = positive[0][1]["noise_concat"]
    assert conditioning.shape == (2, 1, 16, 24)
    for index in range(2):
        assert torch.allclose(depth[index], alone[index][0], atol=1e-5)
        assert torch.allclose(conditioning[index], conditioning_by_the_rule(alone[index][:, None], (16, 24))[0],
                              atol=1e-5)
    model = depth_model()
    seen = FirstConvInputs(model)
    sample_step(model, positive, negative, latent)
    assert torch.allclose(seen.calls[0][:, 4:], torch.cat([conditioning, conditioning]), atol=1e-6)


def test_one_map_conditions_every_picture_and_a_mismatched_batch_is_refused(comfyui, depth_checkpoint_in_comfyui):
    from lib_depth2img import Depth2ImgError

    _, depth = _estimate(comfyui, _image())
    node = comfyui.node("Depth2ImgConditioning")
    positive, _ = node.condition(text(1), text(2), depth, _latents(comfyui, "img2img", batch=3))
    assert positive[0][1]["noise_concat"].shape == (3, 1, 16, 24)
    with pytest.raises(Depth2ImgError, match="The depth holds 2 maps and the latent 3 pictures"):
        node.condition(text(1), text(2), depth.repeat(2, 1, 1), _latents(comfyui, "img2img", batch=3))


def test_a_16_bit_map_loads_at_full_precision(comfyui):
    from PIL import Image

    levels = np.arange(128 * 192, dtype=np.uint32).reshape(128, 192) * 65535 // (128 * 192 - 1)
    Image.fromarray(levels.astype(np.uint16)).save(comfyui.base / "input" / "map16.png")  # Pillow's 16-bit PNG
    loader = comfyui.node("Depth2ImgLoadDepthMap")
    assert "map16.png" in loader.INPUT_TYPES()["required"]["image"][0]
    assert not hasattr(loader, "VALIDATE_INPUTS")  # so ComfyUI checks a name from /prompt against that list
    depth_image, depth = loader.load("map16.png")
    assert depth.dtype == torch.float32 and depth.shape == (1, 128, 192)
    assert torch.equal(depth[0], torch.from_numpy(levels.astype(np.float32) / 65535))
    assert len(torch.unique(depth)) > 256 * 16  # far beyond what an 8-bit load keeps
    assert torch.equal(depth_image[..., 2], depth)


def test_a_map_of_narrow_range_conditions_as_in_the_webui(comfyui):
    """The file's levels go to the rule as they are, as the WebUI's user maps do: stretched first, a map spanning
    200 of 65535 levels gave -1..1 here and -1..0.5 there (the rule's + 0.001 weighs on a range of 0.003)."""
    from PIL import Image

    levels = 30000 + np.linspace(0, 200, 192).round().astype(np.uint16)[None].repeat(128, axis=0)
    Image.fromarray(levels).save(comfyui.base / "input" / "narrow16.png")
    _, depth = comfyui.node("Depth2ImgLoadDepthMap").load("narrow16.png")
    assert torch.equal(depth[0], torch.from_numpy(levels.astype(np.float32) / 65535))
    positive, _ = comfyui.node("Depth2ImgConditioning").condition(text(1), text(2), depth,
                                                                  _latents(comfyui, "txt2img"))
    expected = conditioning_by_the_rule(torch.from_numpy(levels.astype(np.float32) / 65535)[None, None], (16, 24))
    got = positive[0][1]["noise_concat"]
    assert torch.allclose(got, expected, atol=1e-5)
    assert float(got.max()) < 0.6  # what the WebUI gives the same map: not stretched to 1


def test_the_upscale_pass_gets_the_same_depth_at_the_new_size(comfyui, depth_checkpoint_in_comfyui):
    model, node = depth_model(), comfyui.node("Depth2ImgConditioning")
    _, depth = _estimate(comfyui, _image())
    first = _latents(comfyui, "img2img")
    positive, negative = node.condition(text(1), text(2), depth, first)
    upscaled = comfyui.nodes.LatentUpscale().upscale(first, "nearest-exact", 288, 192, "disabled")[0]
    assert upscaled["samples"].shape == (1, 4, 24, 36)
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):  # CONDNoiseShape never resizes
        sample_step(model, positive, negative, upscaled)
    positive, negative = node.condition(positive, negative, depth, upscaled)  # the same depth, never re-estimated
    expected = conditioning_by_the_rule(depth[:, None], (24, 36))
    assert torch.allclose(negative[0][1]["noise_concat"], expected, atol=1e-6)
    seen = FirstConvInputs(model)
    sample_step(model, positive, negative, upscaled)
    assert torch.allclose(seen.calls[0][:, 4:], torch.cat([expected, expected]), atol=1e-6)


def test_a_repeated_picture_costs_no_forward(comfyui, depth_checkpoint_in_comfyui):
    from lib_depth2img.comfyui import host

    image = _image()
    _estimate(comfyui, image)
    counter = ForwardCounter(next(iter(host.HELD.loaded.values())))
    try:
        _, plain = _estimate(comfyui, image.clone())
        _, inverted = _estimate(comfyui, image, invert=True, gamma=2.0)  # adjustments apply after the cache
        assert counter.batches == [] and host.DEPTH_CACHE.hits == 2
        assert not torch.allclose(plain, inverted)
        _estimate(comfyui, _image(flip=True))
        assert counter.batches == [1]
    finally:
        counter.handle.remove()


@pytest.mark.parametrize("high_vram", [False, True])
def test_the_estimator_runs_on_comfyuis_device_and_goes_where_comfyui_keeps_idle_models(
        comfyui, depth_checkpoint_in_comfyui, high_vram):
    from lib_depth2img.comfyui import host

    management = comfyui.model_management
    _estimate(comfyui, _image())
    network = next(iter(host.HELD.loaded.values()))
    moves, empties = [], management.empty_cache_calls
    network.to = lambda *args, **kwargs: moves.append(str(kwargs.get("device", args[0] if args else None))) or network
    management.torch_device = torch.device("cuda")  # .to records; nothing moves
    if high_vram:
        management.vram_state = management.VRAMState.HIGH_VRAM
    try:
        _estimate(comfyui, _image(flip=True))
    finally:
        management.torch_device, management.vram_state = torch.device("cpu"), management.VRAMState.NORMAL_VRAM
        del network.to
    assert moves == ["cuda", "cuda" if high_vram else "cpu"]
    assert management.empty_cache_calls == empties + 1


def test_another_estimator_from_a_model_folder_extra_model_paths_names(comfyui_base, tiny_estimators, tmp_path):
    """extra_model_paths.yaml's folders are registered before the packs load; the pack adds models/<name>."""
    import asyncio

    import folder_paths
    import nodes
    from tiny_estimators import tiny_rule_state

    from lib_depth2img import Depth2ImgError

    shared = tmp_path / "shared_models" / "depth_anything"
    folder_paths.add_model_folder_path("depth_anything", str(shared))  # what the yaml's loader does
    assert asyncio.run(nodes.load_custom_node(str(ROOT)))
    estimate = nodes.NODE_CLASS_MAPPINGS["Depth2ImgEstimate"]()
    assert folder_paths.get_folder_paths("depth_anything") == [str(shared),
                                                                str(comfyui_base / "models" / "depth_anything")]
    with pytest.raises(Depth2ImgError, match=re.escape(
            "Depth source 'depth_anything_v2_vits' (Depth Anything V2 Small) needs its weights file "
            f"depth_anything_v2_vits.pth: put it in {comfyui_base / 'models' / 'depth_anything'}, or choose another "
            "depth source.")):
        estimate.estimate(_image(), "depth_anything_v2_vits", CHECKPOINT, **ADJUSTMENTS)
    shared.mkdir(parents=True)
    torch.save(tiny_rule_state("depth_anything_v2_vits"), shared / "depth_anything_v2_vits.pth")
    _, depth = estimate.estimate(_image(), "depth_anything_v2_vits", CHECKPOINT, **ADJUSTMENTS)
    assert depth.shape == (1, 518, 784)  # Depth Anything's input size for a 192x128 picture
