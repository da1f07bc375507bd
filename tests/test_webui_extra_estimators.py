"""extra_estimators.py against the WebUI imitation: other estimators from files people already have."""


import pytest
import torch
from reference import conditioning_by_the_rule, depth_by_the_rule
from webui_helpers import _as_tensor, _img2img, _picture, _script


@pytest.fixture()
def models_dir(webui, tmp_path):
    from modules import paths_internal

    paths_internal.models_path, paths_internal.extensions_dir = str(tmp_path / "models"), str(tmp_path / "ext")
    yield tmp_path
    paths_internal.models_path, paths_internal.extensions_dir = "models", "extensions"


def _save_depth_anything(folder):
    """The small Depth Anything V2 Small's weights (depth_model puts the small estimators in the registry)."""
    from tiny_estimators import tiny_rule_state

    folder.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_rule_state("depth_anything_v2_vits"), folder / "depth_anything_v2_vits.pth")


def test_another_estimator_from_a_file_people_already_have(webui, depth_model, models_dir):
    from lib_depth2img import Depth2ImgError
    from lib_depth2img.webui import extra_estimators

    _, counter = depth_model
    assert extra_estimators.available() == []
    p = webui.processing.StableDiffusionProcessingImg2Img([_picture()], 192, 128,
                                                          script_args=[{"depth_source": "depth_anything_v2_vits"}])
    with pytest.raises(Depth2ImgError) as error:
        webui.processing.process_images(p, [_script(webui)])
    assert str(error.value) == (f"Depth source 'depth_anything_v2_vits' (Depth Anything V2 Small) needs its weights "
                                f"file depth_anything_v2_vits.pth: put it in {models_dir / 'models' / 'depth_anything'}"
                                ", or choose another depth source.")
    assert counter.batches == [] and p.sampled_with == []  # stopped before any work
    # ControlNet's download folder counts too: nobody keeps two copies
    _save_depth_anything(models_dir / "ext" / "sd-webui-controlnet" / "annotator" / "downloads" / "depth_anything_v2")
    assert extra_estimators.available() == ["depth_anything_v2_vits"]
    p, _ = _img2img(webui, [_picture()], script_args=[{"depth_source": "depth_anything_v2_vits"}])
    network = extra_estimators.load("depth_anything_v2_vits")
    # Depth Anything's rule: the side farther from 518 scaled to it, both sides to multiples of 14; ImageNet's
    # mean and std
    depth = depth_by_the_rule(network, _as_tensor(_picture()), (518, 784), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    expected = conditioning_by_the_rule(depth, (16, 24))
    assert counter.batches == []  # the checkpoint's MiDaS did not run
    assert torch.allclose(p.sampled_with[0], expected, atol=1e-3)
    assert p.extra_generation_params["Depth2img source"] == "depth_anything_v2_vits"


def test_other_estimators_leave_the_gpu_under_medvram(webui, depth_model, models_dir):
    from lib_depth2img.webui import extra_estimators

    _save_depth_anything(models_dir / "models" / "depth_anything")
    network = extra_estimators.load("depth_anything_v2_vits")
    moves = []
    network.to = lambda *args, **kwargs: moves.append(str(kwargs.get("device", args[0] if args else None))) or network
    from modules import devices

    devices.device, webui.shared.cmd_opts.medvram = torch.device("cuda"), True  # .to records; nothing moves
    try:
        _img2img(webui, [_picture()], script_args=[{"depth_source": "depth_anything_v2_vits"}])
    finally:
        devices.device, webui.shared.cmd_opts.medvram = devices.cpu, False
        del network.to
    assert moves == ["cuda", "cpu"]  # to the compute device for the forward, then off it
