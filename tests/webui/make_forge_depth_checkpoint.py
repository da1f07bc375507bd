"""Build an SD2 depth checkpoint with random weights that Forge can load as SD 2 depth (5 input channels).

Run with the original WebUI's python: ``python make_forge_depth_checkpoint.py WEBUI_DIR OUT_DIR [--name NAME]``.
Writes NAME.safetensors (float16, about 1.2 GB) and NAME.yaml into OUT_DIR.

As make_tiny_depth_checkpoint.py, but Forge builds the text encoder and VAE from fixed SD 2.1 configs and
matches SD 2 only with model_channels 320 and context_dim 1024: the OpenCLIP ViT-H text tower, the VAE
and DPT-Hybrid keep their full size; only the UNet is shrunk (channel_mult [1, 1], one res block,
attention at both levels: about 45 M parameters). Only for tests: its pictures are noise.
"""

import argparse
import os
import sys
import time

import torch
from omegaconf import OmegaConf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/, for reference.py
from reference import rule_weights  # noqa: E402  (the parity fixtures' rule: plain random DPT-Hybrid gives 0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("webui", help="the original WebUI's folder (its ldm builds the model)")
    parser.add_argument("out", help="where NAME.safetensors and NAME.yaml go")
    parser.add_argument("--name", default="tiny-forge-depth")
    args = parser.parse_args()
    started = time.time()
    repository = os.path.join(args.webui, "repositories", "stable-diffusion-stability-ai")
    sys.path[:0] = [args.webui, repository]
    from ldm.modules.midas import api
    from ldm.util import instantiate_from_config
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = OmegaConf.load(os.path.join(repository, "configs", "stable-diffusion", "v2-midas-inference.yaml"))
    params = config.model.params
    unet = params.unet_config.params
    unet.update(use_checkpoint=False, model_channels=320, context_dim=1024, channel_mult=[1, 1],
                num_res_blocks=1, attention_resolutions=[1, 2])
    # full ViT-H text tower, built empty: version None = no pretrained download
    params.cond_stage_config.params.update(version=None, device="cpu")
    api.ISL_PATHS = {k: None for k in api.ISL_PATHS}  # build DPT-Hybrid empty: no weights file is read
    model = instantiate_from_config(config.model).eval()

    # A random text encoder's zero-initialised layers give NaN in img2img, and ldm zero-initialises the
    # UNet's output layers (it would ignore depth): perturb every exact zero but the depth model's, which
    # gets rule-set weights.
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("depth_model."):
                continue
            zero = parameter == 0
            if zero.any():
                parameter[zero] = torch.randn(int(zero.sum())) * 0.02
        midas = model.depth_model.model
        midas.load_state_dict(rule_weights({k: tuple(v.shape) for k, v in midas.state_dict().items()}))
        probe = torch.rand(1, 3, 384, 384) * 2 - 1
        depth = model.depth_model(probe)
        print(f"DPT-Hybrid probe: min {depth.min():.4g} max {depth.max():.4g} std {depth.std():.4g}")
        assert torch.isfinite(depth).all() and depth.std() > 0, "degenerate depth model"

    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()
             if k not in ("lvlb_weights", "cond_stage_model.model.attn_mask")}
    for k, v in state.items():
        assert torch.isfinite(v).all(), k
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.name}.safetensors")
    save_file(state, path)
    OmegaConf.save(config, os.path.join(args.out, f"{args.name}.yaml"))
    print(path, f"{os.path.getsize(path) / 1e9:.3f} GB", f"{time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
