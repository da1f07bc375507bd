"""Shared pieces of the adapter tests against the small WebUI imitation in tests/webui_imitation: a fake
depth model that holds a network as ldm's MiDaSInference does, pictures, one img2img run, the expected
conditioning."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from reference import synthetic_image

ROOT = Path(__file__).parent.parent
IMITATION = Path(__file__).parent / "webui_imitation"


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


def _expected(webui, estimator, picture_tensor, latent=(16, 24), invert=False):
    from lib_depth2img.adjustments import DepthAdjustments
    from lib_depth2img.estimators import input_spec_for
    from lib_depth2img.pipeline import condition_pictures

    return condition_pictures(estimator, picture_tensor, latent, input_spec=input_spec_for("dpt_hybrid"),
                              adjustments=DepthAdjustments(invert=invert)).conditioning


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
