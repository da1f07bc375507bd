"""Against a real WebUI v1.10.1 on CPU (opt-in; see conftest.py): the extension end to end over the API."""

from __future__ import annotations

import base64
import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from reference import synthetic_image

from lib_depth2img.estimators import create_estimator
from lib_depth2img.pipeline import condition_pictures
from lib_depth2img.weights import load_estimator_from_file

SIZE = 64  # the tiny model's pictures; depth is still estimated at MiDaS's 384


def _b64(picture: Image.Image) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[-1])))


def _picture(flip: bool = False, size: int = 128) -> Image.Image:
    pixels = (synthetic_image(size, size) * 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels[::-1, ::-1]) if flip else pixels)


def _img2img(webui, pictures, settings=None, **extra):
    payload = {"init_images": [_b64(p) for p in pictures], "prompt": "a house by a lake", "seed": 1234,
               "steps": 2, "width": SIZE, "height": SIZE, "denoising_strength": 1.0, "sampler_name": "Euler",
               "cfg_scale": 5, "batch_size": len(pictures), **extra}
    if settings is not None:
        payload["alwayson_scripts"] = {"Depth-to-image": {"args": [settings]}}
    response = webui.post("/sdapi/v1/img2img", payload)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def depth_checkpoint(webui):
    return webui.data_dir / "models" / "Stable-diffusion" / f"{webui.checkpoint}.safetensors"


@pytest.fixture(scope="module")
def our_estimator(depth_checkpoint):
    """Our DPT with the checkpoint's own MiDaS weights: what the WebUI's depth maps must equal."""
    return load_estimator_from_file(create_estimator("dpt_hybrid"), depth_checkpoint)


def _expected_map(estimator, picture: Image.Image) -> np.ndarray:
    tensor = torch.from_numpy(np.asarray(picture.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    depth = condition_pictures(estimator, tensor, (SIZE // 8, SIZE // 8)).depth[0, 0]
    depth = (depth - depth.min()) / (depth.max() - depth.min())
    image = Image.fromarray(np.round(depth.numpy() * 255).astype(np.uint8)).resize((SIZE, SIZE))
    return np.asarray(image, dtype=np.float64)


def _similar(actual: Image.Image, expected: np.ndarray) -> bool:
    actual = np.asarray(actual.convert("L"), dtype=np.float64)
    return np.abs(actual - expected).mean() < 4 and np.corrcoef(actual.ravel(), expected.ravel())[0, 1] > 0.98


def test_model_loaded_offline_with_models_midas_empty(webui, depth_checkpoint):
    assert webui.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith(webui.checkpoint)
    assert list((webui.data_dir / "models" / "midas").iterdir()) == []
    assert "Downloading midas model weights" not in webui.log.read_text()


def test_batch_of_two_pictures_gets_two_depth_maps_each_its_own(webui, our_estimator):
    first, second = _picture(), _picture(flip=True)
    result = _img2img(webui, [first, second], {"add_depth_to_results": True})
    assert len(result["images"]) == 4  # two pictures, then their two depth maps
    maps = [_decode(data) for data in result["images"][2:]]
    assert not np.array_equal(np.asarray(maps[0]), np.asarray(maps[1]))
    assert _similar(maps[0], _expected_map(our_estimator, first.resize((SIZE, SIZE), Image.LANCZOS)))
    assert _similar(maps[1], _expected_map(our_estimator, second.resize((SIZE, SIZE), Image.LANCZOS)))


def _mask(box) -> Image.Image:
    mask = Image.new("L", (128, 128), 0)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    return mask


def test_inpaint_whole_picture_takes_depth_from_the_untouched_picture(webui, our_estimator):
    picture = _picture()
    result = _img2img(webui, [picture], {"add_depth_to_results": True}, mask=_b64(_mask((20, 20, 100, 100))),
                      inpainting_fill=0, inpaint_full_res=False)
    expected = _expected_map(our_estimator, picture.resize((SIZE, SIZE), Image.LANCZOS))
    assert _similar(_decode(result["images"][1]), expected)


def test_inpaint_only_masked_takes_depth_from_the_sampled_crop(webui, our_estimator):
    picture = _picture()
    result = _img2img(webui, [picture], {"add_depth_to_results": True}, mask=_b64(_mask((32, 32, 95, 95))),
                      inpainting_fill=1, inpaint_full_res=True, inpaint_full_res_padding=0, mask_blur=0)
    crop = picture.crop((32, 32, 96, 96)).resize((SIZE, SIZE), Image.LANCZOS)
    assert _similar(_decode(result["images"][1]), _expected_map(our_estimator, crop))
    whole = _expected_map(our_estimator, picture.resize((SIZE, SIZE), Image.LANCZOS))
    assert not _similar(_decode(result["images"][1]), whole)


def test_infotext_written_and_read_back(webui):
    result = _img2img(webui, [_picture()], {"invert": True})
    assert "Depth2img invert: True" in result["info"]
    parameters = webui.post("/sdapi/v1/png-info", {"image": result["images"][0]}).json()["parameters"]
    assert parameters["Depth2img invert"] in ("True", True) and parameters["Depth2img"] in ("True", True)


def test_positional_arguments_work_too(webui):
    positional = _img2img(webui, [_picture()], None, alwayson_scripts={"Depth-to-image": {"args": [True,
                                                                                               "checkpoint", True]}})
    named = _img2img(webui, [_picture()], {"invert": True})
    assert positional["images"][0] == named["images"][0]


def test_txt2img_is_stopped_with_words_and_writes_nothing(webui, depth_checkpoint):
    before = webui.output_files()
    response = webui.post("/sdapi/v1/txt2img", {"prompt": "a house", "steps": 2, "width": SIZE, "height": SIZE,
                                                "save_images": True})
    assert response.status_code == 500
    assert response.json()["errors"] == (
        "txt2img with a depth model needs the depth to keep: give a depth map (depth source 'upload') or a picture "
        "for depth in the Depth-to-image accordion (through the API: 'depth_map' or 'depth_picture' as base64), or "
        "use img2img.")
    assert webui.output_files() == before


def test_same_seed_same_picture_whatever_ran_between_even_an_interruption(webui):
    # The WebUI's first generation after start-up differs slightly from later identical ones, with or
    # without this extension (seen on CPU: up to 5/255), so the reference is not taken from it.
    _img2img(webui, [_picture()], {})
    reference = _img2img(webui, [_picture()], {})["images"][0]
    _img2img(webui, [_picture(flip=True)], {"invert": True, "add_depth_to_results": True},
             mask=_b64(_mask((10, 10, 60, 60))), inpainting_fill=0)
    slow = threading.Thread(target=_img2img, args=(webui, [_picture()], {}), kwargs={"steps": 150})
    slow.start()
    time.sleep(3)
    assert webui.post("/sdapi/v1/interrupt", {}).status_code == 200
    slow.join(timeout=600)
    assert _img2img(webui, [_picture()], {})["images"][0] == reference


def _script_info(webui, name: str, img2img: bool = True) -> dict:
    return next(s for s in webui.get("/sdapi/v1/script-info").json()
                if s["name"] == name and s["is_img2img"] == img2img)


def test_controls_settings_and_script_registered(webui):
    from lib_depth2img.generation_args import DepthArgs, setting_metadata

    ours = _script_info(webui, "depth-to-image")
    assert ours["is_alwayson"]
    assert [arg["label"] for arg in ours["args"]] == [setting_metadata(n)["label"] for n in DepthArgs.names()]
    assert [arg["value"] for arg in ours["args"]] == DepthArgs().to_script_args()
    txt2img = _script_info(webui, "depth-to-image", img2img=False)
    assert [arg["label"] for arg in txt2img["args"]] == [arg["label"] for arg in ours["args"]]  # one settings model
    assert webui.get("/sdapi/v1/options").json()["depth2img_move_to_cpu"] is False
    assert "depth2img" not in webui.log.read_text().lower().split("error")[-1]  # no script error at start-up


def _pixels(data: str) -> np.ndarray:
    return np.asarray(_decode(data).convert("RGB"))


def test_xyz_plot_axis_changes_the_depth_setting_per_cell(webui):
    xyz = _script_info(webui, "x/y/z plot")
    axis = xyz["args"][0]["choices"].index("[Depth2img] Invert depth")
    result = _img2img(webui, [_picture()], None, script_name="x/y/z plot",
                      script_args=[axis, "", ["False", "True"], 0, "", [], 0, "", [], True, True, False, False,
                                   False, False, False, 0, False])
    cells = [_pixels(data) for data in result["images"][1:3]]
    plain = _pixels(_img2img(webui, [_picture()], {})["images"][0])
    inverted = _pixels(_img2img(webui, [_picture()], {"invert": True})["images"][0])
    assert np.array_equal(cells[0], plain) and np.array_equal(cells[1], inverted)
    assert not np.array_equal(plain, inverted)


_LIGHTNING_SAVE = """
import collections, sys, torch
from safetensors.torch import load_file
state_dict = collections.OrderedDict(load_file(sys.argv[1]))
if sys.argv[3] == "without-depth":
    state_dict = collections.OrderedDict((k, v) for k, v in state_dict.items() if not k.startswith("depth_model."))
state_dict._metadata = collections.OrderedDict({"": {"version": 1}})
torch.save({"epoch": 7, "global_step": 1000, "pytorch-lightning_version": "1.4.2", "state_dict": state_dict,
            "callbacks": {"ModelCheckpoint": {"best_model_score": None}}}, sys.argv[2])
"""


def _save_as_lightning_ckpt(source, path, without_depth: bool = False) -> None:
    """As 512-depth-ema.ckpt was written: a Lightning dict around ``state_dict()``, an OrderedDict with
    ``_metadata``; saved by the WebUI's own torch, as its users' files were (the WebUI's loader refuses
    the zip members that much newer torch versions add)."""
    import os
    import subprocess

    from webui_server import webui_python

    subprocess.run([webui_python(os.environ["DEPTH2IMG_WEBUI_DIR"]), "-c", _LIGHTNING_SAVE, str(source), str(path),
                    "without-depth" if without_depth else "whole"], check=True, timeout=300)


@pytest.mark.parametrize("suffix", ["safetensors", "ckpt"])
def test_checkpoint_without_depth_weights_says_which_file_to_put_where(webui, depth_checkpoint, suffix):
    from safetensors.torch import load_file, save_file

    folder = depth_checkpoint.parent
    state = load_file(str(depth_checkpoint))
    without = {k: v for k, v in state.items() if not k.startswith("depth_model.")}
    name = f"no-midas-{suffix}.{suffix}"
    if suffix == "safetensors":
        save_file(without, str(folder / name))
    else:
        _save_as_lightning_ckpt(depth_checkpoint, folder / name, without_depth=True)
    (folder / f"no-midas-{suffix}.yaml").write_text((folder / f"{webui.checkpoint}.yaml").read_text())
    assert webui.post("/sdapi/v1/refresh-checkpoints", {}).status_code == 200
    log_before = len(webui.log.read_text())
    try:
        assert webui.post("/sdapi/v1/options", {"sd_model_checkpoint": name}).status_code == 200
        response = webui.post("/sdapi/v1/img2img", {"init_images": [_b64(_picture())], "prompt": "x", "steps": 2,
                                                    "width": SIZE, "height": SIZE, "denoising_strength": 1.0})
        assert response.status_code == 500
        assert response.json()["errors"] == (
            f"{name} carries no MiDaS weights and dpt_hybrid-midas-501f0c75.pt is missing: put that "
            f"file in {webui.data_dir / 'models' / 'midas'}, then load the checkpoint again.")
    finally:
        webui.post("/sdapi/v1/options", {"sd_model_checkpoint": f"{webui.checkpoint}.safetensors"})
    assert "Error executing callback model_loaded_callback" not in webui.log.read_text()[log_before:]
    assert len(_img2img(webui, [_picture()], {})["images"]) == 1  # back on the depth checkpoint, all is well


def test_a_lightning_ckpt_depth_model_loads_offline_and_generates(webui, depth_checkpoint):
    """The common case the loader must never trip on: a .ckpt saved from state_dict(), with Lightning's extras."""

    folder = depth_checkpoint.parent
    _save_as_lightning_ckpt(depth_checkpoint, folder / "tiny-lightning.ckpt")
    (folder / "tiny-lightning.yaml").write_text((folder / f"{webui.checkpoint}.yaml").read_text())
    (folder / "no-yaml.ckpt").write_bytes((folder / "tiny-lightning.ckpt").read_bytes())
    assert webui.post("/sdapi/v1/refresh-checkpoints", {}).status_code == 200
    _img2img(webui, [_picture()], {})  # not the first generation after start-up (see the seed test)
    reference = _img2img(webui, [_picture()], {"add_depth_to_results": True})["images"]
    log_before = len(webui.log.read_text())
    try:
        assert webui.post("/sdapi/v1/options", {"sd_model_checkpoint": "tiny-lightning.ckpt"}).status_code == 200
        _img2img(webui, [_picture()], {})  # the first generation after a load differs slightly, as after start-up
        images = _img2img(webui, [_picture()], {"add_depth_to_results": True})["images"]
    finally:
        webui.post("/sdapi/v1/options", {"sd_model_checkpoint": f"{webui.checkpoint}.safetensors"})
    assert "Traceback" not in webui.log.read_text()[log_before:]
    # the same weights, whatever file they came in (compared as pixels: the infotext inside names the file)
    differences = [np.abs(np.asarray(_decode(a), dtype=int) - np.asarray(_decode(b), dtype=int)).max()
                   for a, b in zip(images, reference, strict=True)]
    assert differences == [0, 0]
    verdict = webui.get("/depth2img/checkpoint?title=no-yaml.ckpt")  # no yaml: the weights decide
    assert verdict.status_code == 200 and verdict.json()["is_depth"] is True
    assert verdict.json()["estimator"] == "dpt_hybrid"


BAD_SETTINGS = [({"no_such_setting": 1}, "no_such_setting"), ({"gamma": 99.0}, "'gamma' must be between 0.1 and 5"),
                ({"depth_source": "no_such_estimator"}, "'depth_source' must be one of checkpoint, upload"),
                ({"depth_source": "upload"}, "'depth_source' is 'upload' but no depth map was given"),
                ({"depth_source": "dpt_large"}, "needs its weights file dpt_large-midas-2f21e586.pt")]


def test_bad_settings_reach_the_caller_and_nothing_is_made(webui):
    """The WebUI swallows exceptions from script hooks: each of these used to answer 200 with a picture
    made by the WebUI's own depth path."""
    _img2img(webui, [_picture()], {})  # not the first generation after start-up (see the seed test)
    reference = _img2img(webui, [_picture()], {})["images"][0]
    before = webui.output_files()
    for settings, words in BAD_SETTINGS:
        payload = {"init_images": [_b64(_picture())], "prompt": "a house by a lake", "seed": 1234, "steps": 2,
                   "width": SIZE, "height": SIZE, "denoising_strength": 1.0, "sampler_name": "Euler",
                   "cfg_scale": 5, "save_images": True, "alwayson_scripts": {"Depth-to-image": {"args": [settings]}}}
        response = webui.post("/sdapi/v1/img2img", payload)
        assert response.status_code == 500, (settings, response.text[:300])
        assert words in response.json()["errors"], (settings, response.json()["errors"])
    assert webui.output_files() == before
    assert _img2img(webui, [_picture()], {})["images"][0] == reference


def test_checkpoint_route_answers_for_listed_titles_only(webui, depth_checkpoint):
    verdict = webui.get(f"/depth2img/checkpoint?title={webui.checkpoint}.safetensors").json()
    assert verdict["is_depth"] is True and verdict["estimator"] == "dpt_hybrid"
    assert "declares a depth-to-image model" in verdict["reason"]
    assert webui.get("/depth2img/checkpoint?title=nothing.safetensors").status_code == 404
    assert webui.get(f"/depth2img/checkpoint?title={depth_checkpoint}").status_code == 404  # never a path


def test_depth_maps_saved_beside_the_pictures_when_the_setting_says_so(webui):
    assert webui.post("/sdapi/v1/options", {"depth2img_save_depth_maps": True}).status_code == 200
    try:
        before = set(webui.output_files())
        _img2img(webui, [_picture(), _picture(flip=True)], {"add_depth_to_results": True}, save_images=True)
        new = sorted(path.name for path in set(webui.output_files()) - before)
    finally:
        webui.post("/sdapi/v1/options", {"depth2img_save_depth_maps": False})
    new = [name for name in new if not name.startswith("grid")]  # the batch's grid gets no depth map
    pictures = [name for name in new if not name.endswith("-depth.png")]
    assert len(pictures) == 2
    assert sorted(new) == sorted(pictures + [name.rsplit(".", 1)[0] + "-depth.png" for name in pictures])


def _depth_map_b64(width: int = 96, height: int = 64) -> str:
    import cv2

    ramp = np.tile(np.linspace(0, 65535, width).astype(np.uint16), (height, 1))  # 16 bits, near on the right
    return base64.b64encode(cv2.imencode(".png", ramp)[1].tobytes()).decode()


def test_uploaded_depth_map_through_the_api(webui):
    result = _img2img(webui, [_picture()], {"depth_source": "upload", "depth_map": _depth_map_b64(),
                                            "gamma": 2.0, "add_depth_to_results": True})
    assert "Depth2img source: upload" in result["info"] and "Depth2img gamma: 2.0" in result["info"]
    depth = np.asarray(_decode(result["images"][1]).convert("L"), dtype=float)
    column = np.linspace(0, 1, SIZE) ** 2 * 255  # the ramp, stretched to 64 wide, with gamma 2
    assert np.abs(depth.mean(axis=0) - column).max() < 6
    other = _img2img(webui, [_picture()], {"depth_source": "upload", "depth_map": _depth_map_b64()})
    assert other["images"][0] != result["images"][0]  # the map, not the picture, conditions


def test_invalid_depth_map_is_a_clear_error(webui):
    payload = {"init_images": [_b64(_picture())], "prompt": "x", "steps": 2, "width": SIZE, "height": SIZE,
               "alwayson_scripts": {"Depth-to-image": {"args": [{"depth_source": "upload",
                                                                 "depth_map": base64.b64encode(b"junk").decode()}]}}}
    response = webui.post("/sdapi/v1/img2img", payload)
    assert response.status_code == 500
    assert response.json()["errors"].startswith("The depth map is not valid base64 picture data: the bytes it holds "
                                                "are not a PNG, JPEG, WebP, TIFF or BMP file.")


def test_depth_anything_from_models_folder(webui):
    from reference import reference_layout, rule_weights

    folder = webui.data_dir / "models" / "depth_anything"
    folder.mkdir(exist_ok=True)
    torch.save(rule_weights(reference_layout("depth-anything-v2-vits.json")), folder / "depth_anything_v2_vits.pth")
    picture = _picture()
    result = _img2img(webui, [picture], {"depth_source": "depth_anything_v2_vits", "add_depth_to_results": True})
    assert "Depth2img source: depth_anything_v2_vits" in result["info"]
    weights = folder / "depth_anything_v2_vits.pth"  # written by this newer torch: the WebUI's checker refuses it
    estimator = load_estimator_from_file(create_estimator("depth_anything_v2_vits"), weights)
    assert _similar(_decode(result["images"][1]), _expected_map(estimator, picture.resize((SIZE, SIZE), Image.LANCZOS)))
