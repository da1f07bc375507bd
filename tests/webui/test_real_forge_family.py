"""Against real reForge and Forge Classic on CPU, over the API (opt-in), with models/midas empty.

Set DEPTH2IMG_REFORGE_DIR (Panchovix/stable-diffusion-webui-reForge, main) and/or DEPTH2IMG_CLASSIC_DIR
(Haoming02/sd-webui-forge-classic, classic) to the host's folder, each with its venv and repositories/
(Stability-AI/stablediffusion at cf1d67a6 serves as ldm), and DEPTH2IMG_WEBUI_DIR to the original WebUI: its ldm
builds the checkpoint, the parity check runs it beside the host, and its VAE-approx model.pt goes into the host's
data folder. DEPTH2IMG_FORGE_CHECKPOINT may name an already built checkpoint (with its yaml). The real-Forge
suite's host-neutral checks run in each host; what differs here: the host has a depth path of its own (switched
off it runs), and nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_real_browser import PICTURE_TABS, preview_depth_of_the_picture_in_tab
from test_real_forge import (  # noqa: F401  (collected here, run against each host of this module)
    _img2img,
    _payload,
    test_an_uploaded_depth_map_conditions_instead_of_the_picture,
    test_img2img_batch_of_two_gets_each_pictures_depth_from_the_checkpoint_file,
    test_inpaint_whole_picture_takes_depth_from_the_untouched_picture,
    test_the_depth_endpoint_in_forge,
    test_txt2img_from_a_depth_map_with_hires_fix,
)
from test_real_webui import _decode, _picture, _script_info
from webui_server import build_checkpoint, prepare_data_dir, running_webui, serving, webui_python

HOSTS = {name: os.environ.get(variable) for name, variable in
         (("reForge", "DEPTH2IMG_REFORGE_DIR"), ("Forge Classic", "DEPTH2IMG_CLASSIC_DIR"))}
pytestmark = pytest.mark.skipif(not any(HOSTS.values()), reason="real reForge/Forge Classic test: set "
                                "DEPTH2IMG_REFORGE_DIR or DEPTH2IMG_CLASSIC_DIR to the host's folder")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    prebuilt = os.environ.get("DEPTH2IMG_FORGE_CHECKPOINT")
    if prebuilt:
        return Path(prebuilt)
    return build_checkpoint(os.environ["DEPTH2IMG_WEBUI_DIR"], tmp_path_factory.mktemp("forge-checkpoint"),
                            "tiny-forge-depth", builder="make_forge_depth_checkpoint.py")


@pytest.fixture(scope="module", params=[name for name, folder in HOSTS.items() if folder] or ["none"])
def forge(request, tmp_path_factory, checkpoint):
    """One host at a time (their checkpoints are big): started as its README says, with this extension linked."""
    host_dir, data_dir = HOSTS[request.param], tmp_path_factory.mktemp("forge-family-data")
    prepare_data_dir(data_dir, checkpoint)
    # reForge ships no VAE-approx model.pt and downloads it at its first generation (offline: URLError);
    # the original WebUI ships it
    approx = data_dir / "models" / "VAE-approx"
    approx.mkdir()
    shutil.copy2(Path(os.environ["DEPTH2IMG_WEBUI_DIR"]) / "models" / "VAE-approx" / "model.pt", approx)
    command = [webui_python(host_dir), "launch.py", "--skip-prepare-environment", "--skip-python-version-check",
               "--skip-torch-cuda-test", "--always-cpu", "--api", "--no-download-sd-model", "--data-dir",
               str(data_dir)]
    with serving(command, host_dir, data_dir / "host.log", data_dir, checkpoint, loaded_line=" loaded in ") as host:
        host.name = request.param
        yield host


@pytest.fixture(scope="module")
def our_estimator(checkpoint):
    from lib_depth2img.estimators import create_estimator
    from lib_depth2img.weights import load_estimator_from_file

    return load_estimator_from_file(create_estimator("dpt_hybrid"), checkpoint)


def test_the_host_is_named_and_loads_offline_with_the_checkpoints_depth(forge):
    log = forge.log.read_text(errors="replace")
    assert f"Depth-to-image: running in {forge.name}" in log
    assert "now holds the depth weights of" in log and "Downloading midas" not in log
    assert list((forge.data_dir / "models" / "midas").iterdir()) == []


def test_switched_off_the_hosts_own_depth_path_runs_and_txt2img_is_stopped(forge):
    response = forge.post("/sdapi/v1/img2img", _payload([_picture()], {"enabled": False}))
    assert response.status_code == 200, response.text[:2000]
    assert "Depth2img" not in response.json()["info"]
    assert np.asarray(_decode(response.json()["images"][0]), dtype=float).std() > 0
    response = forge.post("/sdapi/v1/txt2img", {"prompt": "a house", "steps": 2, "width": 64, "height": 64})
    assert response.status_code == 500
    assert "txt2img with a depth model needs the depth to keep" in str(response.json())



def test_the_same_depth_as_the_original_webui_and_the_same_picture_as_the_hosts_own_depth_path(forge, checkpoint,
                                                                                            tmp_path):
    """Parity on one checkpoint, picture, seed and settings. The depth map must be the original WebUI's. The
    picture is compared with the host's own depth path (switched off): Forge Classic's sampling differs from the
    WebUI's by itself (measured: mean 7.2/255 with its own depth path as with ours, against 12.9 for inverted
    depth), so the WebUI's picture is no reference there; reForge's matches it (mean 0.3/255). The control is
    the same host with the depth inverted."""
    def pixels(result, index=0):
        return np.asarray(_decode(result["images"][index]).convert("RGB"), dtype=float)

    _img2img(forge, [_picture()], {})  # not the first generation after a load (see the seed test of the WebUI)
    ours = _img2img(forge, [_picture()], {"add_depth_to_results": True})
    own = _img2img(forge, [_picture()], {"enabled": False})
    inverted = _img2img(forge, [_picture()], {"invert": True})
    with running_webui(os.environ["DEPTH2IMG_WEBUI_DIR"], tmp_path / "webui-data", checkpoint) as webui:
        _img2img(webui, [_picture()], {})
        in_webui = _img2img(webui, [_picture()], {"add_depth_to_results": True})
    depth_maps = np.abs(pixels(ours, 1) - pixels(in_webui, 1))
    correlation = np.corrcoef(pixels(ours, 1).ravel(), pixels(in_webui, 1).ravel())[0, 1]
    own_path = np.abs(pixels(ours) - pixels(own))
    control = np.abs(pixels(ours) - pixels(inverted))
    print(f"\n{forge.name} vs original WebUI: depth map max {depth_maps.max():.1f}/255, correlation "
          f"{correlation:.4f}; picture mean {np.abs(pixels(ours) - pixels(in_webui)).mean():.2f}/255 (the host's "
          f"own depth path: {np.abs(pixels(own) - pixels(in_webui)).mean():.2f}). In {forge.name}, ours vs its own "
          f"depth path: max {own_path.max():.1f}/255, mean {own_path.mean():.2f}/255; control (inverted depth): "
          f"mean {control.mean():.2f}/255")
    assert depth_maps.max() <= 2  # the same depth, from the same weights, by the same code
    assert own_path.mean() * 5 < control.mean()


def _xyz_script_args(forge, axis_label: str, values: list[str]) -> list:
    """The X/Y/Z plot's arguments: its first nine (the axes) are the same in every host; the rest differ in
    number and order (reForge adds three, Classic keeps A1111's), so they keep the host's defaults, by label."""
    info = _script_info(forge, "x/y/z plot")
    args = [arg["value"] for arg in info["args"]]
    args[:9] = [info["args"][0]["choices"].index(axis_label), "", values, 0, "", [], 0, "", []]
    args[[arg["label"] for arg in info["args"]].index("Include Sub Images")] = True
    return args


def test_xyz_plot_axis_changes_the_depth_setting_per_cell(forge):
    def pixels(data):
        return np.asarray(_decode(data).convert("RGB")).astype(int)

    _img2img(forge, [_picture()], {})  # not the first generation after a load (see the seed test of the WebUI)
    plain = pixels(_img2img(forge, [_picture()], {})["images"][0])
    inverted = pixels(_img2img(forge, [_picture()], {"invert": True})["images"][0])
    result = _img2img(forge, [_picture()], None, script_name="x/y/z plot",
                      script_args=_xyz_script_args(forge, "[Depth2img] Invert depth", ["False", "True"]))
    cells = [pixels(data) for data in result["images"][1:3]]
    assert np.abs(cells[0] - plain).max() <= 2 and np.abs(cells[1] - inverted).max() <= 2
    assert np.abs(plain - inverted).mean() > 5


@pytest.fixture(scope="module")
def page(forge):
    from test_real_browser import open_page

    with open_page(forge.url) as opened:
        opened.host_name = forge.name.replace(" ", "-").lower()
        yield opened


@pytest.mark.parametrize(("tab", "elem_id"), PICTURE_TABS)
def test_preview_depth_finds_the_picture_of_each_img2img_tab(page, tmp_path, tab, elem_id):
    preview_depth_of_the_picture_in_tab(page, tmp_path, tab, elem_id, page.host_name)
