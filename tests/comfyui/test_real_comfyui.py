"""The node pack in a real ComfyUI on CPU, over its API (opt-in; see conftest.py).

Each example workflow of ``workflows/`` runs as shipped (fewer steps, smaller latents); a probe node
(probe_nodes/) records what the UNet's first conv receives, which is compared with the core's conditioning
computed here from the same files with the checkpoint's own MiDaS weights.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from examples import (
    MAP_HIGH,
    MAP_LOW,
    SIZE,
    depth_map_values,
    expected_from_map,
    expected_from_picture,
    fifth_channel,
    write_examples,
)
from graphs import load_workflow, of_class, output_nodes, quick, with_probes

from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_from_file

WORKFLOWS = ["img2img_depth", "txt2img_from_depth_map", "inpaint_depth", "upscale_second_pass"]
TOLERANCE = 1e-3  # of the conditioning's range [-1, 1]: float32 arithmetic in two processes, nothing more


@pytest.fixture(scope="module")
def served(comfyui, pack):
    if not (pack / "workflows").is_dir():
        pytest.skip(f"{pack} has no workflows/ yet (DEPTH2IMG_COMFYUI_PACK may name a checkout that has)")
    write_examples(comfyui.input_dir)
    return comfyui


@pytest.fixture(scope="module")
def our_estimator(checkpoint):
    """Our DPT-Hybrid with the checkpoint file's depth_model.* weights (ComfyUI itself drops them)."""
    return load_estimator_from_file(create_estimator("dpt_hybrid"), checkpoint)


def _run(comfyui, name: str, run: str, edit=None, with_outputs: bool = False):
    prompt = quick(load_workflow(comfyui_pack(comfyui), name), SIZE)
    if edit is not None:
        edit(prompt)
    prompt, probes = with_probes(prompt, run)
    outputs = comfyui.run(prompt)
    pictures = [picture for node in output_nodes(prompt) if node in outputs
                for picture in comfyui.images(outputs, node)]  # SaveImage's first, then the previews
    probed = {sampler: comfyui.probe(name) for sampler, name in probes.items()}
    return (prompt, pictures, probed, outputs) if with_outputs else (prompt, pictures, probed)


def comfyui_pack(comfyui):
    return (comfyui.base_dir / "custom_nodes" / "sd-webui-depth2img").resolve()


def _pixels(picture) -> np.ndarray:
    return np.asarray(picture.convert("RGB"), dtype=np.float64)


def _latent_size(probe) -> tuple[int, int]:
    return tuple(probe["latent_shape"][-2:])


def _max_difference(seen: torch.Tensor, expected: torch.Tensor) -> float:
    return float((seen - expected.float().expand_as(seen)).abs().max())


@pytest.mark.parametrize("name", WORKFLOWS)
def test_each_example_workflow_runs_and_gives_a_picture(served, name):
    _, pictures, probes = _run(served, name, f"runs-{name}")
    assert pictures, f"{name} saved no picture"
    for picture in pictures:
        pixels = _pixels(picture)
        assert np.isfinite(pixels).all() and pixels.std() > 0
    for probe in probes.values():
        depth = fifth_channel(probe)
        assert depth.min() >= -1 and depth.max() <= 1 and depth.std() > 0.1  # a depth, not the inpaint mask


def test_fifth_channel_is_the_cores_conditioning_from_the_checkpoints_own_midas(served, our_estimator):
    _, _, probes = _run(served, "img2img_depth", "fifth")
    (probe,) = probes.values()
    seen, handed = fifth_channel(probe), probe["c_concat"]
    expected = expected_from_picture(our_estimator, served.input_dir, _latent_size(probe))
    raw_rule = expected_from_picture(our_estimator, served.input_dir, _latent_size(probe), as_mask=False)
    unet_dtype = getattr(torch, probe["conv_input_dtype"])
    print(f"\nimg2img: c_concat ComfyUI handed to the UNet ({handed.shape[0]} rows, cond and uncond) vs the core's "
          f"conditioning through a [0, 1] MASK: max difference {_max_difference(handed, expected):.2e}; vs the rule "
          f"on the estimator's own range (the WebUI's): {_max_difference(handed, raw_rule):.2e}; the first conv's "
          f"channel 5 ({probe['conv_input_dtype']}) vs c_concat: {_max_difference(seen, handed):.2e}")
    assert probe["cond_or_uncond"] and tuple(handed.shape[1:]) == (1, *_latent_size(probe))
    assert _max_difference(handed, expected) < TOLERANCE
    assert torch.equal(seen, handed.to(unet_dtype).float())  # the UNet gets it as is, in its own dtype


def test_the_depth_comes_from_the_checkpoint_file_with_nothing_under_models(served):
    files = sorted(str(p.relative_to(served.base_dir / "models")) for p in (served.base_dir / "models").rglob("*")
                   if p.is_file())
    assert files == ["checkpoints/512-depth-ema.safetensors"]
    assert "midas" not in served.log.read_text(errors="replace").lower()  # nothing looked for or fetched


def _set_invert(prompt: dict, value: bool) -> None:
    for node in of_class(prompt, "Depth2ImgEstimate"):
        prompt[node]["inputs"]["invert"] = value


def test_same_seed_and_depth_give_the_same_picture_inverted_depth_another(served):
    _, first, plain = _run(served, "img2img_depth", "same-1")
    served.free()  # else the identical prompt is served from ComfyUI's cache and nothing runs
    _, again, _ = _run(served, "img2img_depth", "same-2")
    served.free()
    _, inverted, probes = _run(served, "img2img_depth", "inverted", edit=lambda p: _set_invert(p, True))
    same = np.abs(_pixels(first[0]) - _pixels(again[0]))
    changed = np.abs(_pixels(first[0]) - _pixels(inverted[0]))
    print(f"\nsame seed and depth: max difference {same.max():.1f}/255; inverted depth: mean difference "
          f"{changed.mean():.2f}/255")
    assert same.max() == 0
    assert changed.mean() > 1.0
    (plain,), (probe,) = plain.values(), probes.values()
    assert np.corrcoef(fifth_channel(plain).ravel(), fifth_channel(probe).ravel())[0, 1] < -0.99


def test_a_16_bit_map_conditions_at_full_precision(served):
    _, _, probes = _run(served, "txt2img_from_depth_map", "map16")
    (probe,) = probes.values()
    seen = fifth_channel(probe)
    expected = expected_from_map(_latent_size(probe))
    eight_bit_levels = np.unique(np.round(depth_map_values() / 257.0))
    print(f"\n16-bit map ({MAP_LOW}..{MAP_HIGH} of 65535, {eight_bit_levels.size} levels in 8 bits): channel 5 "
          f"spans {float(seen.min()):.3f}..{float(seen.max()):.3f} with {len(torch.unique(seen))} values, max "
          f"difference from the rule on value / 65535 (the WebUI's) {_max_difference(seen, expected):.2e}")
    assert eight_bit_levels.size <= 2  # so a loader keeping 8 bits could not give the ramp
    assert _max_difference(seen, expected) < TOLERANCE
    assert len(torch.unique(seen[0])) > 16  # a ramp, not the two levels 8 bits keep


def test_the_upscale_pass_gets_the_same_depth_at_the_new_size(served, our_estimator):
    prompt, _, probes, outputs = _run(served, "upscale_second_pass", "upscale", with_outputs=True)
    assert len(probes) == 2, "the workflow should have two KSamplers"
    first, second = sorted(probes.values(), key=lambda probe: _latent_size(probe))
    assert _latent_size(second) == tuple(2 * side for side in _latent_size(first))
    from_map = bool(of_class(prompt, "Depth2ImgLoadDepthMap")) and not of_class(prompt, "Depth2ImgEstimate")
    for probe in (first, second):
        size = _latent_size(probe)
        expected = (expected_from_map(size) if from_map
                    else expected_from_picture(our_estimator, served.input_dir, size))
        difference = _max_difference(fifth_channel(probe), expected)
        print(f"\nupscale workflow, latent {size}: max difference from the core {difference:.2e}")
        assert difference < TOLERANCE
    saved = [picture.size for node in of_class(prompt, "SaveImage") for picture in served.images(outputs, node)]
    assert (16 * _latent_size(first)[1],) * 2 in saved  # the second pass's picture, at twice the first's size
