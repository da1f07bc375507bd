"""Parity with the original WebUI v1.10.1 (opt-in: DEPTH2IMG_COMFYUI_DIR and DEPTH2IMG_WEBUI_DIR).

One checkpoint (ComfyUI's 512-depth-ema with its yaml beside it), one picture, seed and settings: the WebUI (img2img
with this extension, over its API) runs first and is stopped, then ComfyUI runs the img2img example workflow (the
two never run at once: each holds the 1.2 GB checkpoint). A test-only probe in each host (webui_probe/, probe_nodes/)
records what the UNet's first conv receives; its fifth channel is the depth conditioning.
"""

from __future__ import annotations

import base64
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from examples import PICTURE, SIZE, picture_tensor, write_examples
from graphs import load_workflow, of_class, quick, with_probes
from PIL import Image

from lib_depth2img.estimators import create_estimator
from lib_depth2img.pipeline import condition_pictures
from lib_depth2img.weights import load_estimator_from_file

sys.path.insert(0, str(Path(__file__).parent.parent / "webui"))
from webui_server import running_webui  # noqa: E402

WEBUI_DIR = os.environ.get("DEPTH2IMG_WEBUI_DIR")
pytestmark = pytest.mark.skipif(not WEBUI_DIR, reason="parity with the original WebUI: set DEPTH2IMG_WEBUI_DIR to a "
                                                      "WebUI v1.10.1 folder (and DEPTH2IMG_COMFYUI_DIR) to run it")
WEBUI_PROBE = Path(__file__).parent / "webui_probe" / "depth2img-test-probe"
STEPS, SEED, DENOISE = 4, 1234, 1.0  # denoise 1: both hosts then sample from sigma_max over the same schedule
TOLERANCE = 1e-3  # of the conditioning's range [-1, 1], as in test_real_comfyui.py
EPSILON = 0.001  # the SD2 training rule's 2 (d - min) / (max - min + 0.001) - 1


def _workflow(pack: Path) -> dict:
    """The img2img example, quick (SIZE, STEPS, SEED) and at DENOISE; KSampler inputs name their prompts' nodes."""
    prompt = quick(load_workflow(pack, "img2img_depth"), SIZE, steps=STEPS, seed=SEED)
    (sampler,) = of_class(prompt, "KSampler")
    prompt[sampler]["inputs"]["denoise"] = DENOISE
    return prompt


def _prompt_texts(prompt: dict) -> dict:
    (sampler,) = of_class(prompt, "KSampler")
    inputs = prompt[sampler]["inputs"]
    conditioning = prompt[inputs["positive"][0]]["inputs"]  # Depth2ImgConditioning
    text = {side: prompt[conditioning[side][0]]["inputs"]["text"] for side in ("positive", "negative")}
    return {"prompt": text["positive"], "negative_prompt": text["negative"], "cfg_scale": inputs["cfg"]}


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    """The example files (the picture both hosts get, byte for byte)."""
    folder = tmp_path_factory.mktemp("parity-examples")
    write_examples(folder)
    return folder


@pytest.fixture(scope="module")
def webui_runs(tmp_path_factory, checkpoint, pack, examples) -> dict:
    """The WebUI's pictures and probes (plain, depth inverted), taken before ComfyUI starts."""
    pytest.importorskip("requests", reason="the parity test talks to the WebUI over HTTP with requests")
    if not checkpoint.with_suffix(".yaml").is_file():
        pytest.skip(f"the WebUI needs {checkpoint.with_suffix('.yaml').name} beside {checkpoint}")
    picture = base64.b64encode((examples / PICTURE).read_bytes()).decode()
    payload = {"init_images": [picture], "seed": SEED, "steps": STEPS, "width": SIZE, "height": SIZE,
               "denoising_strength": DENOISE, "sampler_name": "Euler", "scheduler": "Automatic", "batch_size": 1,
               **_prompt_texts(_workflow(pack))}
    runs = {}
    with running_webui(WEBUI_DIR, tmp_path_factory.mktemp("webui-data"), checkpoint, (WEBUI_PROBE,)) as webui:
        probe = webui.data_dir / "depth2img_probe" / "last.pt"
        for name, invert in (("warm-up", False), ("plain", False), ("inverted", True)):
            response = webui.post("/sdapi/v1/img2img", {
                **payload, "alwayson_scripts": {"Depth-to-image": {"args": [{"invert": invert}]}}})
            assert response.status_code == 200, response.text[:2000]
            data = response.json()["images"][0]
            runs[name] = (Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[-1]))).convert("RGB"),
                          torch.load(probe, weights_only=True))
    return runs


@pytest.fixture(scope="module")
def comfyui_runs(webui_runs, comfyui) -> dict:
    """The same in ComfyUI (started only after the WebUI has stopped: this fixture asks for webui_runs first)."""
    write_examples(comfyui.input_dir)
    pack = (comfyui.base_dir / "custom_nodes" / "sd-webui-depth2img").resolve()
    runs = {}
    for name, invert in (("plain", False), ("inverted", True)):
        prompt = _workflow(pack)
        for node in of_class(prompt, "Depth2ImgEstimate"):
            prompt[node]["inputs"]["invert"] = invert
        prompt, probes = with_probes(prompt, f"parity-{name}")
        outputs = comfyui.run(prompt)
        (saver,) = of_class(prompt, "SaveImage")
        (picture,) = comfyui.images(outputs, saver)
        (probe_name,) = probes.values()
        runs[name] = (picture.convert("RGB"), comfyui.probe(probe_name))
        comfyui.free()
    return runs


def _fifth(probe: dict) -> torch.Tensor:
    assert probe["first_conv_weight_shape"][1] == 5 and probe["conv_input"].shape[1] == 5
    return probe["conv_input"][:, 4:5]


def _pixels(picture: Image.Image) -> np.ndarray:
    return np.asarray(picture, dtype=np.float64)


def test_the_same_depth_conditioning_as_the_original_webui(webui_runs, comfyui_runs, checkpoint, examples):
    in_webui, in_comfyui = _fifth(webui_runs["plain"][1]), _fifth(comfyui_runs["plain"][1])
    assert in_webui.shape[-2:] == in_comfyui.shape[-2:] == (SIZE // 8, SIZE // 8)
    # The expected gap, from the rule itself: ComfyUI's MASK holds the estimate stretched over [0, 1] at the
    # estimator's resolution (its range r becomes 1), so after the bicubic resize to the latent (range R there, R / r
    # in ComfyUI) the rule's epsilon weighs r times less: at the nearest point the two differ by
    # 2 |R / (R + eps r) - R / (R + eps)|. r and R come from our estimator with the checkpoint's MiDaS weights.
    estimator = load_estimator_from_file(create_estimator("dpt_hybrid"), checkpoint)
    core = condition_pictures(estimator, picture_tensor(examples), (SIZE // 8, SIZE // 8))
    raw = core.depth
    resized = F.interpolate(raw, size=(SIZE // 8, SIZE // 8), mode="bicubic", align_corners=False)
    r, big_r = float(raw.max() - raw.min()), float(resized.max() - resized.min())
    bound = 2 * abs(big_r / (big_r + EPSILON * r) - big_r / (big_r + EPSILON))
    difference = float((in_webui[0] - in_comfyui[0]).abs().max())
    webui_vs_core = float((in_webui[0] - core.conditioning[0]).abs().max())
    rows = float(max((rows[1:] - rows[:1]).abs().max() for rows in (in_webui, in_comfyui)))
    print(f"\nparity: fifth channel, original WebUI vs ComfyUI: max difference {difference:.2e} (the epsilon's "
          f"share with this checkpoint's depth ranges {r:.3f} at 384, {big_r:.3f} at the latent: {bound:.2e}); "
          f"WebUI vs the core's rule on the raw estimate: {webui_vs_core:.2e}; cond vs uncond rows in each host: "
          f"{rows:.1e}; conv input dtypes {webui_runs['plain'][1]['conv_input_dtype']} / "
          f"{comfyui_runs['plain'][1]['conv_input_dtype']}")
    assert rows == 0  # both sides of the guidance carry the depth, in both hosts
    # TOLERANCE: float32 MiDaS in two torch versions (2.1 in the WebUI), magnified by the rule's 2 / R
    assert webui_vs_core < TOLERANCE  # the WebUI conditions by the core's rule, on the estimator's own range
    assert difference <= bound + TOLERANCE
    assert np.corrcoef(in_webui.ravel(), in_comfyui.ravel())[0, 1] > 0.999


def test_the_hosts_pictures_differ_far_less_than_inverting_the_depth_changes_them(webui_runs, comfyui_runs):
    hosts = np.abs(_pixels(webui_runs["plain"][0]) - _pixels(comfyui_runs["plain"][0]))
    control = np.abs(_pixels(comfyui_runs["plain"][0]) - _pixels(comfyui_runs["inverted"][0]))
    webui_control = np.abs(_pixels(webui_runs["plain"][0]) - _pixels(webui_runs["inverted"][0]))
    print(f"\nparity: picture, original WebUI vs ComfyUI: max {hosts.max():.1f}/255, mean {hosts.mean():.2f}/255; "
          f"control (depth inverted): ComfyUI mean {control.mean():.2f}/255, WebUI mean {webui_control.mean():.2f}/255")
    assert control.mean() > 1.0 and webui_control.mean() > 1.0  # the depth matters to the picture in both hosts
    assert hosts.mean() * 5 < control.mean()
