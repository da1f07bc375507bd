"""Without our nodes, ComfyUI cannot run an SD2 depth checkpoint: the first step fails on the channel count.

ComfyUI takes 512-depth-ema for an inpaint model (more than 4 UNet input channels) and feeds mask + masked
latent: 4 + 5 = 9 channels into a first conv made for 5. This is the failure the node pack exists to remove.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from comfyui_server import PromptFailed, running_comfyui
from graphs import inpaint_model_conditioning, plain_txt2img, with_probes
from PIL import Image
from reference import synthetic_image

COMFYUI_DIR = os.environ.get("DEPTH2IMG_COMFYUI_DIR")  # not from conftest: two suites' conftest modules share that name

CHANNEL_ERROR = "expected input[2, 9, 8, 8] to have 5 channels, but got 9 channels instead"


@pytest.fixture(scope="module")
def bare_comfyui(tmp_path_factory, checkpoint):
    pytest.importorskip("requests", reason="the real-ComfyUI tests talk to it over HTTP with requests")
    with running_comfyui(COMFYUI_DIR, tmp_path_factory.mktemp("comfyui-bare"), checkpoint, pack=None) as instance:
        yield instance


def test_without_our_nodes_the_pack_is_absent(bare_comfyui):
    assert os.listdir(bare_comfyui.base_dir / "custom_nodes") == ["depth2img_test_probe"]
    nodes = bare_comfyui.get("/object_info").json()
    assert "Depth2ImgTestProbe" in nodes and "Depth2ImgConditioning" not in nodes


def test_plain_txt2img_fails_with_the_channel_error(bare_comfyui):
    prompt, probes = with_probes(plain_txt2img(size=64), "baseline")
    with pytest.raises(PromptFailed) as failure:
        bare_comfyui.run(prompt)
    print(f"\nComfyUI without the pack, plain KSampler: {failure.value}")
    assert CHANNEL_ERROR in str(failure.value)
    seen = bare_comfyui.probe(probes["3"])  # the inpaint concat: mask (1) + masked latent (4) after the latent (4)
    assert seen["first_conv_weight_shape"] == (320, 5, 3, 3) and tuple(seen["conv_input"].shape) == (2, 9, 8, 8)
    assert tuple(seen["c_concat"].shape) == (2, 5, 8, 8)
    assert (seen["conv_input"][:, 4] == 1).all()  # no noise mask: ComfyUI's mask channel is all ones


def test_inpaint_model_conditioning_fails_with_the_channel_error_too(bare_comfyui):
    picture = (synthetic_image(64, 64) * 255).round().astype(np.uint8)
    Image.fromarray(picture).save(bare_comfyui.input_dir / "baseline.png")
    with pytest.raises(PromptFailed) as failure:
        bare_comfyui.run(inpaint_model_conditioning("baseline.png"))
    print(f"\nComfyUI without the pack, InpaintModelConditioning: {failure.value}")
    assert CHANNEL_ERROR in str(failure.value)
