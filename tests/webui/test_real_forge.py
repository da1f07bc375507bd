"""Against a real Forge (lllyasviel/stable-diffusion-webui-forge, main) on CPU, over the API (opt-in).

Set DEPTH2IMG_FORGE_DIR to Forge's folder (with its venv) and DEPTH2IMG_WEBUI_DIR to the original WebUI,
whose ldm builds the test checkpoint (make_forge_depth_checkpoint.py) and which the parity test runs
beside Forge. DEPTH2IMG_FORGE_CHECKPOINT may name an already built one (with its yaml) to save the build.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

import numpy as np
import pytest
from forge_server import running_forge
from PIL import Image
from test_real_browser import PICTURE_TABS, depth_shown_in_preview, preview_depth_of_the_picture_in_tab, stroke
from test_real_webui import SIZE, _b64, _decode, _depth_map_b64, _expected_map, _mask, _picture, _similar
from webui_server import build_checkpoint, running_webui

from lib_depth2img.estimators import create_estimator
from lib_depth2img.weights import load_estimator_from_file

FORGE_DIR = os.environ.get("DEPTH2IMG_FORGE_DIR")
pytestmark = pytest.mark.skipif(not FORGE_DIR, reason="real-Forge test: set DEPTH2IMG_FORGE_DIR to a Forge folder")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("DEPTH2IMG_FORGE_CHECKPOINT")
    if prebuilt:
        return Path(prebuilt)
    return build_checkpoint(os.environ["DEPTH2IMG_WEBUI_DIR"], tmp_path_factory.mktemp("forge-checkpoint"),
                            "tiny-forge-depth", builder="make_forge_depth_checkpoint.py")


@pytest.fixture(scope="module")
def forge(tmp_path_factory, checkpoint):
    with running_forge(FORGE_DIR, tmp_path_factory.mktemp("forge-data"), checkpoint) as instance:
        yield instance


@pytest.fixture(scope="module")
def our_estimator(checkpoint):
    """Our DPT with the checkpoint file's MiDaS weights, which Forge itself never loads."""
    return load_estimator_from_file(create_estimator("dpt_hybrid"), checkpoint)


def _payload(pictures, settings=None, **extra) -> dict:
    payload = {"init_images": [_b64(p) for p in pictures], "prompt": "a house by a lake", "seed": 1234, "steps": 2,
               "width": SIZE, "height": SIZE, "denoising_strength": 1.0, "sampler_name": "Euler", "cfg_scale": 5,
               "batch_size": len(pictures), **extra}
    if settings is not None:
        payload["alwayson_scripts"] = {"Depth-to-image": {"args": [settings]}}
    return payload


def _img2img(instance, pictures, settings=None, **extra) -> dict:
    response = instance.post("/sdapi/v1/img2img", _payload(pictures, settings, **extra))
    assert response.status_code == 200, response.text[:2000]
    return response.json()


def _error(response) -> str:
    body = response.json()
    return body.get("errors") or body.get("message") or ""  # the original WebUI's key, Forge's


def test_img2img_batch_of_two_gets_each_pictures_depth_from_the_checkpoint_file(forge, our_estimator):
    first, second = _picture(), _picture(flip=True)
    result = _img2img(forge, [first, second], {"add_depth_to_results": True})
    assert len(result["images"]) == 4 and "Depth2img: True" in result["info"]
    maps = [_decode(data) for data in result["images"][2:]]
    assert not np.array_equal(np.asarray(maps[0]), np.asarray(maps[1]))
    assert _similar(maps[0], _expected_map(our_estimator, first.resize((SIZE, SIZE), Image.LANCZOS)))
    assert _similar(maps[1], _expected_map(our_estimator, second.resize((SIZE, SIZE), Image.LANCZOS)))
    pictures = [np.asarray(_decode(data), dtype=float) for data in result["images"][:2]]
    assert all(np.isfinite(p).all() and p.std() > 0 for p in pictures)


def test_inpaint_whole_picture_takes_depth_from_the_untouched_picture(forge, our_estimator):
    picture = _picture()
    result = _img2img(forge, [picture], {"add_depth_to_results": True}, mask=_b64(_mask((20, 20, 100, 100))),
                      inpainting_fill=0, inpaint_full_res=False)
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, picture.resize((SIZE, SIZE),
                                                                                               Image.LANCZOS)))


def test_inpaint_only_masked_takes_depth_from_the_sampled_crop(forge, our_estimator):
    picture = _picture()
    result = _img2img(forge, [picture], {"add_depth_to_results": True}, mask=_b64(_mask((32, 32, 95, 95))),
                      inpainting_fill=1, inpaint_full_res=True, inpaint_full_res_padding=0, mask_blur=0)
    crop = picture.crop((32, 32, 96, 96)).resize((SIZE, SIZE), Image.LANCZOS)
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, crop))


def test_an_uploaded_depth_map_conditions_instead_of_the_picture(forge):
    result = _img2img(forge, [_picture()], {"depth_source": "upload", "depth_map": _depth_map_b64(),
                                            "add_depth_to_results": True})
    depth = np.asarray(_decode(result["images"][1]).convert("L"), dtype=float)
    assert np.abs(depth.mean(axis=0) - np.linspace(0, 255, SIZE)).max() < 6  # the ramp, stretched to 64 wide
    assert _img2img(forge, [_picture()], {})["images"][0] != result["images"][0]


def test_txt2img_and_switched_off_runs_are_stopped_with_words_and_nothing_is_saved(forge):
    before = forge.output_files()
    response = forge.post("/sdapi/v1/txt2img", {"prompt": "a house", "steps": 2, "width": SIZE, "height": SIZE,
                                                "save_images": True})
    assert response.status_code == 500
    assert "txt2img with a depth model needs the depth to keep" in _error(response)
    response = forge.post("/sdapi/v1/img2img", _payload([_picture()], {"enabled": False}, save_images=True))
    assert response.status_code == 500 and "Forge has no depth path of its own" in _error(response)
    assert "channels" not in _error(response)
    response = forge.post("/sdapi/v1/img2img", _payload([_picture()], {"gamma": 99.0}, save_images=True))
    assert response.status_code == 500 and "'gamma' must be between 0.1 and 5" in _error(response)
    assert forge.output_files() == before


@pytest.mark.parametrize("upscaler", ["Latent", "Lanczos"])
def test_txt2img_from_a_depth_map_with_hires_fix(forge, upscaler):
    settings = {"depth_source": "upload", "depth_map": _depth_map_b64(), "add_depth_to_results": True}
    payload = {"prompt": "a house by a lake", "seed": 1234, "steps": 2, "width": SIZE, "height": SIZE,
               "sampler_name": "Euler", "cfg_scale": 5, "enable_hr": True, "hr_scale": 2, "hr_upscaler": upscaler,
               "hr_second_pass_steps": 2, "denoising_strength": 0.7,
               "hr_additional_modules": ["Use same choices"],  # Forge's API fails on Hires fix without it (None)
               "alwayson_scripts": {"Depth-to-image": {"args": [settings]}}}
    response = forge.post("/sdapi/v1/txt2img", payload)
    assert response.status_code == 200, response.text[:2000]
    result = response.json()
    picture, depth = _decode(result["images"][0]), _decode(result["images"][1])
    assert picture.size == depth.size == (2 * SIZE, 2 * SIZE) and "Depth2img depth: map" in result["info"]
    depth = np.asarray(depth.convert("L"), dtype=float)
    assert depth[:, -8:].mean() > depth[:, :8].mean() + 100  # the ramp (cropped to a square): near on the right
    assert np.asarray(picture, dtype=float).std() > 0


def test_the_same_picture_as_the_original_webui_far_closer_than_inverted_depth(forge, checkpoint, tmp_path):
    """Parity: one checkpoint, picture, seed and settings in both hosts. The control is the same host with
    the depth inverted: the hosts must differ far less than depth changes the picture."""
    def pixels(result, index=0):
        return np.asarray(_decode(result["images"][index]).convert("RGB"), dtype=float)

    _img2img(forge, [_picture()], {})  # not the first generation after a load (see the seed test of the WebUI)
    in_forge = _img2img(forge, [_picture()], {"add_depth_to_results": True})
    inverted = _img2img(forge, [_picture()], {"invert": True})
    with running_webui(os.environ["DEPTH2IMG_WEBUI_DIR"], tmp_path / "webui-data", checkpoint) as webui:
        _img2img(webui, [_picture()], {})
        in_webui = _img2img(webui, [_picture()], {"add_depth_to_results": True})
    hosts = np.abs(pixels(in_forge) - pixels(in_webui))
    control = np.abs(pixels(in_forge) - pixels(inverted))
    depth_maps = np.abs(pixels(in_forge, 1) - pixels(in_webui, 1))
    correlation = np.corrcoef(pixels(in_forge, 1).ravel(), pixels(in_webui, 1).ravel())[0, 1]
    print(f"\n{getattr(forge, 'name', 'Forge')} vs original WebUI: picture max {hosts.max():.1f}/255, mean "
          f"{hosts.mean():.2f}/255; depth map max {depth_maps.max():.1f}/255, correlation {correlation:.4f}; "
          f"control (inverted depth): mean {control.mean():.2f}/255")
    assert depth_maps.max() <= 2  # the same depth, from the same weights, by the same code
    assert hosts.mean() * 5 < control.mean()


@pytest.fixture(scope="module")
def page(forge):
    from test_real_browser import open_page

    with open_page(forge.url) as opened:
        yield opened


@pytest.mark.parametrize(("tab", "elem_id"), PICTURE_TABS)
def test_preview_depth_finds_the_picture_of_each_img2img_tab(page, tmp_path, tab, elem_id):
    """Forge's first four tabs are ForgeCanvas blocks, whose picture reaches the server through a hidden input;
    its Inpaint upload tab stays a gr.Image."""
    preview_depth_of_the_picture_in_tab(page, tmp_path, tab, elem_id, "forge")


@pytest.mark.parametrize(("tab", "elem_id", "painted"), [("Sketch", "img2img_sketch", True),
                                                      ("Inpaint sketch", "inpaint_sketch", True),
                                                      ("Inpaint", "img2maskimg", False),
                                                      ("img2img", "img2img_image", False)])
def test_preview_depth_of_a_sketch_tab_has_the_paint_on_it(page, tmp_path, tab, elem_id, painted):
    """Forge lays a sketch canvas's paint over the picture before it generates (its img2img.py, modes 1 and 3):
    a white stroke (the default brush) changes the preview there. Inpaint's strokes are the mask, not paint, and
    the img2img canvas takes none (no_scribbles): the preview stays."""
    def preview() -> np.ndarray:
        before = page.evaluate("() => { const i = document.querySelectorAll('#depth2img_img2img_preview img'); "
                               "return i.length ? i[i.length - 1].src : ''; }")
        page.locator("#depth2img_img2img_preview_button").click()
        with contextlib.suppress(Exception):  # an unchanged map may keep its file, so its address
            page.wait_for_function("(before) => { const i = document.querySelectorAll("
                                   "'#depth2img_img2img_preview img'); return i.length && i[i.length - 1].src "
                                   "&& i[i.length - 1].src !== before; }", arg=before, timeout=20_000)
        return depth_shown_in_preview(page)

    def strokes() -> str:  # the canvas's stroke layer, as the page holds it for gradio
        return page.evaluate("(id) => { const c = document.querySelector(`#${id} [id^=container_uuid_]`); "
                             "const uuid = c.id.slice('container_'.length); return document.querySelector("
                             "`#${uuid}.logical_image_foreground textarea`).value; }", elem_id)

    page.locator("#tabs > .tab-nav button", has_text="img2img").first.click()
    page.locator("#mode_img2img > .tab-nav button").filter(has_text=re.compile(f"^\\s*{tab}\\s*$")).click()
    picture = tmp_path / "picture.png"
    _picture(size=200).save(picture)
    page.locator(f"#{elem_id} input.forge-file-upload").set_input_files(str(picture))  # the canvas's own input
    page.wait_for_timeout(1000)
    plain, blank = preview(), strokes()
    stroke(page, elem_id)
    after = preview()
    change = np.abs(after - plain).mean()
    print(f"\n{tab}: the preview after a stroke differs by {change:.2f}/255 on average")
    assert plain.shape == after.shape == (200, 200)
    assert (strokes() != blank) == (tab != "img2img")  # the stroke reached the canvas where it takes strokes
    assert change > 1 if painted else change < 0.5
    assert page.errors == []


def test_another_estimator_from_the_models_folder_in_forge(forge):
    import torch
    from reference import reference_layout, rule_weights

    weights = forge.data_dir / "models" / "depth_anything" / "depth_anything_v2_vits.pth"
    weights.parent.mkdir(exist_ok=True)
    torch.save(rule_weights(reference_layout("depth-anything-v2-vits.json")), weights)
    picture = _picture()
    result = _img2img(forge, [picture], {"depth_source": "depth_anything_v2_vits", "add_depth_to_results": True})
    assert "Depth2img source: depth_anything_v2_vits" in result["info"]
    estimator = load_estimator_from_file(create_estimator("depth_anything_v2_vits"), weights)
    assert _similar(_decode(result["images"][1]), _expected_map(estimator, picture.resize((SIZE, SIZE), Image.LANCZOS)))


def test_xyz_plot_axis_changes_the_depth_setting_per_cell(forge):
    from test_real_webui import _script_info

    def pixels(data):
        return np.asarray(_decode(data).convert("RGB"))

    _img2img(forge, [_picture()], {})  # not the first generation after a load (see the seed test of the WebUI)
    plain = pixels(_img2img(forge, [_picture()], {})["images"][0])
    inverted = pixels(_img2img(forge, [_picture()], {"invert": True})["images"][0])
    axis = _script_info(forge, "x/y/z plot")["args"][0]["choices"].index("[Depth2img] Invert depth")
    result = _img2img(forge, [_picture()], None, script_name="x/y/z plot",
                      script_args=[axis, "", ["False", "True"], 0, "", [], 0, "", [], True, True, False, False,
                                   False, False, False, 0, False])
    cells = [pixels(data).astype(int) for data in result["images"][1:3]]
    assert np.abs(cells[0] - plain).max() <= 2 and np.abs(cells[1] - inverted).max() <= 2  # Forge: not bit-exact
    assert np.abs(plain.astype(int) - inverted).mean() > 5


def test_the_depth_endpoint_in_forge(forge, our_estimator):
    """Forge (pydantic 2) serves the same schema; depth comes from the checkpoint file, as in generations."""
    picture = _picture()
    answer = forge.post("/depth2img/v1/depth", {"image": _b64(picture), "width": SIZE, "bits": 16})
    assert answer.status_code == 200, answer.text[:2000]
    body = answer.json()
    assert body["estimator"] == "dpt_hybrid" and (body["width"], body["height"]) == (SIZE, SIZE)
    depth = _decode(body["image"])
    assert depth.mode.startswith("I")
    eight = Image.fromarray((np.asarray(depth, dtype=np.float64) / 257).round().astype(np.uint8))
    assert _similar(eight, _expected_map(our_estimator, picture))
    assert forge.post("/depth2img/v1/depth", {"image": _b64(picture), "gamma": 0}).status_code == 422
