"""The repository as a ComfyUI node pack: loaded by ComfyUI's custom node loader (the imitation's), its nodes'
sockets as the contract names them, ComfyUI imported nowhere else, the note on the 9-channel error, install.py
in both hosts, and a wheel that still holds only lib_depth2img."""

import ast
import logging
import os
import shutil
import subprocess
import sys
import traceback
import zipfile

import pytest
import torch
from comfyui_helpers import CHECKPOINT, ROOT, depth_model, sample_step, text

CATEGORY = "depth2img (SD2 depth)"
COMFYUI_MODULES = ("comfy", "folder_paths", "node_helpers", "nodes", "comfy_api", "comfy_extras", "server")


def test_comfyui_loads_the_repository_as_a_node_pack(comfyui):
    path_before = list(sys.path)
    from lib_depth2img.comfyui import NODE_CLASS_MAPPINGS

    assert sys.path == path_before  # the pack took its folder off sys.path again
    assert set(NODE_CLASS_MAPPINGS) == {"Depth2ImgEstimate", "Depth2ImgConditioning", "Depth2ImgLoadDepthMap"}
    for name, node in NODE_CLASS_MAPPINGS.items():
        assert comfyui.nodes.NODE_CLASS_MAPPINGS[name] is node
        assert comfyui.nodes.NODE_DISPLAY_NAME_MAPPINGS[name]
        assert node.CATEGORY == CATEGORY and node.DESCRIPTION
        assert node.RELATIVE_PYTHON_MODULE == f"custom_nodes.{ROOT.name}"  # noqa: SIM300 (set by the loader)
        assert callable(getattr(node(), node.FUNCTION))
        assert len(node.RETURN_TYPES) == len(node.RETURN_NAMES) == len(node.OUTPUT_TOOLTIPS)
    # models/<folder> of every estimator, for ComfyUI's model lists and extra_model_paths.yaml
    assert comfyui.folder_paths.get_folder_paths("midas") == [str(comfyui.base / "models" / "midas")]


def test_sockets_are_the_contracts_and_every_input_has_a_tooltip(comfyui, depth_checkpoint_in_comfyui):
    (comfyui.base / "input" / "depth2img_example_depth.png").write_bytes(b"")
    inputs = {name: comfyui.nodes.NODE_CLASS_MAPPINGS[name].INPUT_TYPES()["required"]
              for name in comfyui.nodes.NODE_CLASS_MAPPINGS}
    types = {node: {name: spec[0] for name, spec in sockets.items()} for node, sockets in inputs.items()}
    assert types["Depth2ImgConditioning"] == {"positive": "CONDITIONING", "negative": "CONDITIONING", "depth": "MASK",
                                              "latent": "LATENT"}
    estimate = types["Depth2ImgEstimate"]
    assert estimate["image"] == "IMAGE" and estimate["invert"] == "BOOLEAN"
    assert {estimate[name] for name in ("near", "far", "gamma", "blur")} == {"FLOAT"}
    assert estimate["estimator"][0] == "checkpoint" and inputs["Depth2ImgEstimate"]["estimator"][1]["default"] == \
        "checkpoint" and "depth_anything_v2_vits" in estimate["estimator"]
    assert estimate["ckpt_name"] == [CHECKPOINT]
    defaults = {name: inputs["Depth2ImgEstimate"][name][1]["default"] for name in ("invert", "near", "far", "gamma",
                                                                                     "blur")}
    assert defaults == {"invert": False, "near": 1.0, "far": 0.0, "gamma": 1.0, "blur": 0.0}  # the WebUI's
    assert types["Depth2ImgLoadDepthMap"]["image"] == ["depth2img_example_depth.png"]
    assert inputs["Depth2ImgLoadDepthMap"]["image"][1]["image_upload"] is True
    for node, sockets in inputs.items():
        for name, spec in sockets.items():
            assert spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    outputs = {name: (node.RETURN_TYPES, node.RETURN_NAMES) for name, node in comfyui.nodes.NODE_CLASS_MAPPINGS.items()}
    assert outputs == {"Depth2ImgEstimate": (("IMAGE", "MASK"), ("depth_image", "depth")),
                       "Depth2ImgLoadDepthMap": (("IMAGE", "MASK"), ("depth_image", "depth")),
                       "Depth2ImgConditioning": (("CONDITIONING", "CONDITIONING"), ("positive", "negative"))}


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module


def test_nothing_outside_lib_depth2img_comfyui_imports_comfyui():
    package = ROOT / "lib_depth2img"
    importers = {str(path.relative_to(ROOT)) for path in package.rglob("*.py")
                 if any(module.split(".")[0] in COMFYUI_MODULES for module in _imported_modules(path))}
    assert importers and all(path.startswith(os.path.join("lib_depth2img", "comfyui")) for path in importers)


def test_the_9_channel_error_gets_its_cause_and_fix_in_comfyuis_log(comfyui, caplog):
    with caplog.at_level(logging.ERROR):
        try:
            sample_step(depth_model(), text(1), text(2), {"samples": torch.zeros(1, 4, 16, 24)})
        except RuntimeError as ex:  # as ComfyUI's execution.py logs a node's exception
            logging.error(f"!!! Exception during processing !!! {ex}")
            logging.error(traceback.format_exc())
            message = str(ex)
        logging.error("!!! Exception during processing !!! some other error")
    first, trace, other = (record.getMessage() for record in caplog.records)
    assert "to have 5 channels, but got 9 channels instead" in message and message in trace
    assert first.startswith(f"!!! Exception during processing !!! {message}\n[depth2img] This is an SD2 depth "
                            "checkpoint")
    assert "'Depth conditioning'" in first and "both positive and negative" in first
    assert "[depth2img]" not in trace and "[depth2img]" not in other


def _run_install(tmp_path, *, launch=None, without_cv2=False):
    """install.py as a host runs it: ``python install.py`` in the pack's folder (the WebUI with its root on
    PYTHONPATH, so ``launch`` imports). pip is a stand-in that records what it was asked."""
    fake = tmp_path / "path"
    (fake / "pip").mkdir(parents=True)
    (fake / "pip" / "__init__.py").write_text("")  # a regular package: before the real pip on sys.path
    (fake / "pip" / "__main__.py").write_text(
        f"import sys; open({str(tmp_path / 'pip.txt')!r}, 'w').write(' '.join(sys.argv[1:]))")
    if launch is not None:
        (fake / "launch.py").write_text(launch)
    runner = ["-c", "import runpy, sys; sys.modules['cv2'] = None; runpy.run_path('install.py', run_name='__main__')"]
    environment = {**os.environ, "PYTHONPATH": str(fake)}
    result = subprocess.run([sys.executable, *(runner if without_cv2 else ["install.py"])], cwd=ROOT,
                            env=environment, capture_output=True, text=True, timeout=120)
    pip = (tmp_path / "pip.txt").read_text() if (tmp_path / "pip.txt").exists() else None
    return result, pip


def test_install_py_in_comfyui_manager_without_the_webuis_launch(tmp_path):
    result, pip = _run_install(tmp_path)
    assert (result.returncode, result.stdout, result.stderr, pip) == (0, "", "", None)  # OpenCV is there: nothing


def test_install_py_installs_opencv_where_comfyui_lacks_it(tmp_path):
    result, pip = _run_install(tmp_path, without_cv2=True)
    assert result.returncode == 0, result.stderr
    assert pip == "install opencv-python-headless"


def test_install_py_in_the_webui_uses_launch(tmp_path):
    launch = ("import sys\nargs = type('Args', (), {'skip_install': False})()\ncalls = []\n"
              "def is_installed(name):\n    return True\n"
              "def run_pip(command, desc=None):\n    raise SystemExit('run_pip ' + command)\n"
              "print('launch imported')\n")
    result, pip = _run_install(tmp_path, launch=launch, without_cv2=True)
    assert (result.returncode, result.stdout, pip) == (0, "launch imported\n", None), result.stderr


def test_the_wheel_still_holds_only_lib_depth2img(tmp_path):
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns("tests", ".git", "build", "*.egg-info", "__pycache__",
                                                               "docs", ".hypothesis"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                             str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and "No module named" in result.stderr:
        pytest.skip(f"pip cannot build a wheel here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"lib_depth2img"}
    assert "lib_depth2img/comfyui/nodes.py" in zipfile.ZipFile(wheel).namelist()
