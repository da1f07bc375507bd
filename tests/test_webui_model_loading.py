"""model_loading.py against the WebUI imitation: ldm's MiDaS loader offline, a checkpoint without depth weights."""

import copy
from pathlib import Path

import torch
from webui_helpers import FakeSDModel


def test_offline_loader_builds_without_downloading(webui, tmp_path):
    from ldm.modules.midas import api

    api.calls.clear()
    missing = str(tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    api.ISL_PATHS["dpt_hybrid"] = missing
    network, _ = api.load_model("dpt_hybrid")
    assert api.calls == [("build", None)] and api.ISL_PATHS["dpt_hybrid"] == missing
    assert network.depth2img_expected_weights_file == missing
    Path(missing).write_bytes(b"")
    api.calls.clear()
    api.load_model("dpt_hybrid")
    assert api.calls == [("build", missing)]  # the file is there: the WebUI's own path, unchanged


def test_checkpoint_without_depth_weights_says_which_file_to_put_where(webui, tmp_path, tiny_hybrid, capsys):
    from safetensors.torch import save_file

    from lib_depth2img.webui import model_loading

    checkpoint = tmp_path / "finetune.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}, str(checkpoint))
    network = copy.deepcopy(tiny_hybrid)
    network.depth2img_expected_weights_file = "/webui/models/midas/dpt_hybrid-midas-501f0c75.pt"
    model = FakeSDModel(network, filename=str(checkpoint))
    assert model_loading.check_loaded_depth_weights in webui.callbacks.callbacks["model_loaded"]
    model_loading.check_loaded_depth_weights(model)
    assert network.depth2img_missing_weights == ("finetune.safetensors carries no MiDaS weights and "
                                                 "dpt_hybrid-midas-501f0c75.pt is missing: put that file in "
                                                 "/webui/models/midas, then load the checkpoint again.")
    with_weights = tmp_path / "512-depth-ema.safetensors"
    save_file({"depth_model.model.pretrained.model.patch_embed.backbone.stem.conv.weight": torch.zeros(1)},
              str(with_weights))
    model.sd_checkpoint_info.filename = str(with_weights)  # the WebUI reuses the model for the next checkpoint
    before = copy.deepcopy(network.state_dict())
    model_loading.check_loaded_depth_weights(model)
    assert not hasattr(network, "depth2img_missing_weights")
    # one tensor is not the network's layout: nothing is copied in (generations read the file instead)
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    assert "laid out unlike the depth weights in 512-depth-ema.safetensors" in capsys.readouterr().out
