"""Shared pieces of the adapter tests against the small WebUI imitation in tests/webui_imitation and
tests/ldm_imitation: a fake depth model that holds a network as ldm's MiDaSInference does, pictures, one
img2img run, the expected conditioning."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from reference import conditioning_by_the_rule, depth_by_the_rule, inverted_by_hand, synthetic_image

ROOT = Path(__file__).parent.parent
# The original WebUI: its modules, and ldm from repositories/stable-diffusion-stability-ai (Forge has no ldm).
WEBUI_IMITATIONS = [Path(__file__).parent / "webui_imitation", Path(__file__).parent / "ldm_imitation"]


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


# DPT-Hybrid's "minimal" rule scales the side nearer 384 to it: a 192x128 picture's width, x2.
DPT_INPUT_OF_A_192x128_PICTURE = (256, 384)


def _expected(estimator, picture_tensor, latent=(16, 24), invert=False):
    """The conditioning of a 192x128 picture by MiDaS's input rule and SD2's training rule, written out."""
    depth = depth_by_the_rule(estimator, picture_tensor, DPT_INPUT_OF_A_192x128_PICTURE)
    return conditioning_by_the_rule(inverted_by_hand(depth) if invert else depth, latent)


def _as_tensor(picture):
    return torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def _mask(box=(40, 30, 150, 100)):
    mask = Image.new("L", (192, 128), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def _map_png(tmp_path, name="map.png", flip=False):
    import cv2

    ramp = np.tile(np.linspace(0, 65535, 96).astype(np.uint16), (64, 1))
    path = tmp_path / name
    cv2.imwrite(str(path), ramp[:, ::-1] if flip else ramp)
    return path
