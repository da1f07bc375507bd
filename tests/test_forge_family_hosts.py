"""The extension in reForge and Forge Classic, against their imitations (tests/reforge_imitation,
tests/classic_imitation) on top of the original WebUI's (tests/webui_imitation, tests/ldm_imitation): ldm's
depth path with a MiDaS network the host builds from models/midas and never fills from the checkpoint."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from webui_helpers import ROOT, WEBUI_IMITATIONS, ForwardCounter, _as_tensor, _expected, _img2img, _picture

TESTS = Path(__file__).parent
NAMES = {"reforge": "reForge 1.0.0v2-v1.10.1RC", "classic": "Forge Classic"}


@pytest.fixture(scope="module", params=["reforge", "classic"])
def host(request):
    """Imports the host's imitation and loads scripts/depth2img.py as the host would."""
    imitations = [TESTS / f"{request.param}_imitation", *WEBUI_IMITATIONS]
    sys.path[:0] = [str(path) for path in imitations]
    try:
        from modules import processing, shared

        if request.param == "classic":
            import cmd_args

            shared.cmd_opts = cmd_args.cmd_opts
        spec = importlib.util.spec_from_file_location("depth2img_script", ROOT / "scripts" / "depth2img.py")
        script_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script_module)
        from modules_forge import forge_loader

        yield type("Host", (), {"kind": request.param, "processing": processing, "shared": shared,
                                "script_module": script_module, "forge_loader": forge_loader})
    finally:
        for path in imitations:
            sys.path.remove(str(path))
        imitated = ("modules", "ldm", "modules_forge", "lib_xyz", "cmd_args")
        for name in [n for n in sys.modules if n.split(".")[0] in imitated
                     or n == "depth2img_script" or n.startswith("lib_depth2img.webui")]:
            del sys.modules[name]


@pytest.fixture()
def loaded(host, tiny_estimators, tiny_depth_checkpoint_file, tmp_path):
    """The host loads the depth checkpoint with models/midas empty."""
    from ldm.modules.midas import api
    from modules import sd_models

    from lib_depth2img.webui import extra_estimators

    api.ISL_PATHS["dpt_hybrid"] = str(tmp_path / "models" / "midas" / "dpt_hybrid-midas-501f0c75.pt")
    api.calls.clear()
    info = sd_models.CheckpointInfo(str(tiny_depth_checkpoint_file), tiny_depth_checkpoint_file.name)
    info.name_for_extra = tiny_depth_checkpoint_file.stem
    host.shared.sd_model = model = host.forge_loader.load_model(info)
    yield model
    host.shared.sd_model = None
    extra_estimators.HELD.clear()


def test_the_host_is_named_and_runs_ldms_depth_path(host):
    from lib_depth2img.webui import generation, hosts

    assert generation.HOST.name == NAMES[host.kind]
    assert generation.HOST.conditioning_method == "depth2img_image_conditioning"
    assert generation.HOST.has_own_depth_path
    assert hosts.found_line(generation.HOST).startswith(f"Depth-to-image: running in {NAMES[host.kind]};")


def test_the_checkpoint_loads_offline_and_fills_the_hosts_network(capsys, host, loaded, tiny_hybrid_state):
    from ldm.modules.midas import api

    assert api.calls == [("build", None)]  # built without a file: no download
    network = loaded.depth_model.model.state_dict()
    assert network.keys() == tiny_hybrid_state.keys()
    assert all(torch.equal(network[k], tiny_hybrid_state[k].to(network[k].dtype)) for k in tiny_hybrid_state)
    assert "now holds the depth weights of 512-depth-ema.safetensors" in capsys.readouterr().out


def test_img2img_takes_the_checkpoints_depth_through_the_hosts_network(host, loaded, tiny_hybrid):
    counter = ForwardCounter(loaded.depth_model.model)
    try:
        picture = _picture()
        p, _ = _img2img(host, [picture])
    finally:
        counter.handle.remove()
    from lib_depth2img.webui import extra_estimators

    assert torch.allclose(p.sampled_with[0], _expected(tiny_hybrid, _as_tensor(picture)), atol=1e-3)
    assert counter.batches == [1] and extra_estimators.HELD.loaded == {}  # the host's network, no second copy
    assert loaded.native_depth_calls == 0 and p.extra_generation_params["Depth2img"] is True


def test_switched_off_the_hosts_own_depth_path_runs(host, loaded):
    p, _ = _img2img(host, [_picture()], script_args=[{"enabled": False}])
    assert loaded.native_depth_calls == 1 and len(p.sampled_with) == 1  # not stopped: the host's path ran
    assert "Depth2img" not in p.extra_generation_params


def test_preview_depth_of_the_picture_in_a_plain_image_tab(host, loaded, tiny_hybrid):
    """The inpaint tab's gr.Image hands {"image", "mask"}; Preview depth takes the picture."""
    from reference import depth_by_the_rule

    from lib_depth2img.depth_image import depth_to_image
    from lib_depth2img.webui import preview

    tabs = preview.picture_inputs()
    pictures = [None] * len(tabs)
    pictures[tabs.index("img2maskimg")] = {"image": _picture(), "mask": None}
    image, message = preview.preview_depth(tabs.index("img2maskimg"), *pictures, True, "checkpoint")
    assert image is not None and "192x128" in message
    expected = depth_to_image(depth_by_the_rule(tiny_hybrid, _as_tensor(_picture()), (256, 384))[0])
    difference = np.asarray(image, dtype=float) - np.asarray(expected.resize(image.size), dtype=float)
    assert np.abs(difference).mean() < 1


def test_forge_classics_xyz_plot_gets_every_axis_from_lib_xyz(host):
    if host.kind != "classic":
        pytest.skip("Forge Classic only: reForge's xyz_grid.py holds its axis classes, as the original WebUI's")
    from modules import scripts

    from lib_depth2img.webui import ui

    path = TESTS / "classic_imitation" / "xyz_grid.py"
    spec = importlib.util.spec_from_file_location("xyz_grid.py", path)  # as the WebUI's script loader names it
    xyz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xyz)
    assert not hasattr(xyz, "AxisOptionImg2Img")  # the start-up AttributeError of the issue
    scripts.scripts_data[:] = [scripts.ScriptClassData(xyz.XYZ, str(path), str(path.parent), xyz)]
    try:
        ui.add_xyz_axes()
    finally:
        scripts.scripts_data.clear()
    tabs = {axis.label: getattr(axis, "is_img2img", None) for axis in xyz.axis_options}
    assert tabs["[Depth2img] Depth gamma"] is None and tabs["[Depth2img] Fit to the txt2img size"] is False
    assert tabs["[Depth2img] Estimate depth from the original picture (inpaint)"] is True


def test_an_xyz_plot_without_the_tab_classes_loses_only_those_axes(host, capsys):
    from modules import scripts

    from lib_depth2img.webui import ui

    class AxisOption:
        def __init__(self, label, type, apply, choices=None):
            self.label = label

    xyz = type(sys)("xyz_grid.py")
    xyz.AxisOption, xyz.axis_options = AxisOption, []
    AxisOption.__module__ = "xyz_grid.py"
    scripts.scripts_data[:] = [scripts.ScriptClassData(type("XYZ", (), {"__module__": "xyz_grid.py"}), "", "", xyz)]
    try:
        ui.add_xyz_axes()
    finally:
        scripts.scripts_data.clear()
    labels = [axis.label for axis in xyz.axis_options]
    assert "[Depth2img] Depth gamma" in labels and "[Depth2img] Invert depth" in labels
    assert "[Depth2img] Fit to the txt2img size" not in labels
    assert "[Depth2img] Estimate depth from the original picture (inpaint)" not in labels
    out = capsys.readouterr().out
    assert "has no AxisOptionImg2Img: the X/Y/Z plot gets no axis for the img2img-only depth settings" in out


@pytest.mark.parametrize("low_memory", [False, True])
def test_another_estimator_leaves_the_gpu_by_the_hosts_own_low_memory_flag(host, loaded, tmp_path, low_memory):
    """reForge keeps --medvram; Forge Classic has no such attribute (the issue's 500 'Namespace' object has no
    attribute 'medvram'), its flag is --always-low-vram."""
    from modules import devices, paths_internal
    from tiny_estimators import tiny_rule_state

    from lib_depth2img.webui import extra_estimators

    folder = tmp_path / "models" / "depth_anything"
    folder.mkdir(parents=True)
    torch.save(tiny_rule_state("depth_anything_v2_vits"), folder / "depth_anything_v2_vits.pth")
    paths_internal.models_path = str(tmp_path / "models")
    flag = "medvram" if host.kind == "reforge" else "always_low_vram"
    assert hasattr(host.shared.cmd_opts, "medvram") == (host.kind == "reforge")
    network = extra_estimators.load("depth_anything_v2_vits")
    moves = []
    network.to = lambda *args, **kwargs: moves.append(str(kwargs.get("device", args[0] if args else None))) or network
    devices.device = torch.device("cuda")  # .to records; nothing moves
    setattr(host.shared.cmd_opts, flag, low_memory)
    try:
        p, _ = _img2img(host, [_picture()], script_args=[{"depth_source": "depth_anything_v2_vits"}])
    finally:
        devices.device, paths_internal.models_path = devices.cpu, "models"
        setattr(host.shared.cmd_opts, flag, False)
        del network.to
    assert p.extra_generation_params["Depth2img source"] == "depth_anything_v2_vits" and len(p.sampled_with) == 1
    assert moves == (["cuda", "cpu"] if low_memory else ["cuda"])


def test_a_depth_refiner_after_a_plain_base_stops_with_words(host, loaded, tmp_path):
    """Forge's sampler hands c_concat to any model whose latent size it matches: a plain base would get 5
    channels, so the refiner's depth cannot ride through its steps as in the original WebUI."""
    from modules import sd_models
    from webui_helpers import FakeSDModel

    from lib_depth2img import Depth2ImgError

    refiner = loaded.sd_checkpoint_info
    host.shared.sd_model = FakeSDModel(None, filename=str(tmp_path / "v2-1_512-ema-pruned.safetensors"))
    p = host.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128)
    p.refiner_checkpoint_info = refiner
    with pytest.raises(Depth2ImgError, match="this WebUI's sampler would hand its depth to the base model too"):
        host.processing.process_images(p, [host.script_module.Depth2ImgScript()])
    assert p.sampled_with == [] and isinstance(refiner, sd_models.CheckpointInfo)
