"""routes.py against the WebUI imitation: the checkpoint verdict route."""


import torch


def test_checkpoint_route_answers_only_for_listed_checkpoints(webui, tmp_path):
    from modules import sd_models
    from safetensors.torch import save_file

    from lib_depth2img.webui import routes

    path = tmp_path / "512-depth-ema.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(320, 5, 3, 3)}, str(path))
    sd_models.checkpoint_aliases["512-depth-ema.safetensors [abc]"] = sd_models.CheckpointInfo(
        str(path), "512-depth-ema.safetensors [abc]")
    verdict = routes.checkpoint_verdict("512-depth-ema.safetensors [abc]")
    assert verdict["is_depth"] is True and verdict["estimator"] == "dpt_hybrid" and "5 input" in verdict["reason"]
    assert routes.checkpoint_verdict(str(path)) is None  # a path is never looked up
    assert routes.checkpoint_verdict("../../etc/passwd") is None
