"""Run with the WebUI's python: ``python conversion_crosscheck.py WEBUI_DIR WORK_DIR`` prints one JSON line.

A full-size SD2 depth pipeline with random weights (DPT-Hybrid with the parity rule's weights) is
converted to a checkpoint and back. ldm's own ``LatentDepth2ImageDiffusion``, built from the
converted yaml, must load the checkpoint strictly; each of its four networks is then run beside
diffusers' / transformers' model loaded from the folder converted back, on the same input.
"""

import gc
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

HERE = Path(__file__).parent


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours - theirs).abs().max() / theirs.abs().max())


def main() -> None:
    webui, work = Path(sys.argv[1]), Path(sys.argv[2])
    ldm = webui / "repositories" / "stable-diffusion-stability-ai"
    sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent), str(ldm)]
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers_folder import write_depth_pipeline
    from ldm.modules.midas import api
    from ldm.util import instantiate_from_config
    from reference import reference_layout, rule_weights
    from safetensors.torch import load_file
    from transformers import CLIPTextModel, DPTForDepthEstimation

    from lib_depth2img.conversion.dpt_keys import midas_to_transformers
    from lib_depth2img.conversion.to_checkpoint import diffusers_to_checkpoint
    from lib_depth2img.conversion.to_diffusers import checkpoint_to_diffusers

    torch.manual_seed(0)
    depth = midas_to_transformers(rule_weights(reference_layout("midas-dpt_hybrid.json")))
    folder = write_depth_pipeline(work / "diffusers", torch.float32, std=0.02, depth_estimator=depth)
    checkpoint, yaml_path = diffusers_to_checkpoint(folder, work / "ckpt" / "finetune.safetensors")
    back = checkpoint_to_diffusers(checkpoint, work / "back")
    config = OmegaConf.load(yaml_path)
    config.model.params.cond_stage_config.params.update(version=None, device="cpu")  # no download of CLIP weights
    api.ISL_PATHS = {k: None for k in api.ISL_PATHS}
    model = instantiate_from_config(config.model).eval()
    own_schedule = {k: v.clone() for k, v in model.state_dict().items() if "." not in k}
    state = load_file(str(checkpoint))
    model.load_state_dict(state, strict=True)
    results = {"strict_load": True, "schedule_error": max(relative_error(state[k], v) for k, v in own_schedule.items())}
    del state
    with torch.no_grad():
        latent, context = torch.randn(1, 5, 16, 16), torch.randn(1, 77, 1024)
        unet = UNet2DConditionModel.from_pretrained(back / "unet").eval()
        results["unet"] = relative_error(model.model.diffusion_model(latent, torch.tensor([500]), context=context),
                                         unet(latent, 500, encoder_hidden_states=context).sample)
        del unet
        gc.collect()
        vae = AutoencoderKL.from_pretrained(back / "vae").eval()
        picture = torch.rand(1, 3, 64, 64) * 2 - 1
        results["vae_encode"] = relative_error(model.first_stage_model.encode(picture).mean,
                                               vae.encode(picture).latent_dist.mean)
        z = torch.randn(1, 4, 8, 8)
        results["vae_decode"] = relative_error(model.first_stage_model.decode(z), vae.decode(z).sample)
        del vae
        text = CLIPTextModel.from_pretrained(back / "text_encoder").eval()
        tokens = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407] + [0] * 70])
        results["text_encoder"] = relative_error(model.cond_stage_model.encode_with_transformer(tokens),
                                                 text(tokens).last_hidden_state)
        del text
        estimator = DPTForDepthEstimation.from_pretrained(back / "depth_estimator").eval()
        pixels = torch.rand(1, 3, 384, 384) * 2 - 1
        results["depth_estimator"] = relative_error(model.depth_model.model(pixels),
                                                    estimator(pixel_values=pixels).predicted_depth)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
