"""Build a tiny SD2 depth checkpoint with random weights from the WebUI's own depth yaml.

Run with the WebUI's python: ``python make_tiny_depth_checkpoint.py WEBUI_DIR OUT_DIR [--name NAME]``.
Writes NAME.safetensors and NAME.yaml into OUT_DIR. Only for tests: its pictures are noise. The
UNet, VAE and text tower are shrunk (the VAE keeps its 8x downscale, the UNet its 5 input channels);
the MiDaS DPT-Hybrid keeps its real size, because the checkpoint's depth weights are what is tested,
and gets the parity fixture's rule-set weights: random ones make DPT's output all zero. ``--plain`` builds
the plain SD2 model of the same shrunk shapes instead (v2-inference.yaml: a 4-channel UNet, no MiDaS), a base
or refiner beside the depth one.
"""

import argparse
import glob
import json
import os
import sys

import torch
from omegaconf import OmegaConf


def smallest_text_tower(open_clip) -> tuple[str, int]:
    best = None
    for path in glob.glob(os.path.join(os.path.dirname(open_clip.__file__), "model_configs", "*.json")):
        with open(path) as f:
            text = json.load(f).get("text_cfg", {})
        if "width" in text and "hf_model_name" not in text:  # a Hugging Face tower would be downloaded
            key = (text["width"], text.get("layers", 12), os.path.basename(path))
            best = min(best, key) if best else key
    return os.path.splitext(best[2])[0], best[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("webui", help="the WebUI folder")
    parser.add_argument("out", help="where NAME.safetensors and NAME.yaml go")
    parser.add_argument("--name", default="tiny-depth")
    parser.add_argument("--plain", action="store_true", help="a plain SD2 model (4-channel UNet, no MiDaS)")
    args = parser.parse_args()
    repository = os.path.join(args.webui, "repositories", "stable-diffusion-stability-ai")
    sys.path.insert(0, repository)
    import open_clip
    from ldm.modules.midas import api
    from ldm.util import instantiate_from_config
    from safetensors.torch import save_file

    torch.manual_seed(0)
    config = OmegaConf.load(os.path.join(repository, "configs", "stable-diffusion",
                                          "v2-inference.yaml" if args.plain else "v2-midas-inference.yaml"))
    params = config.model.params
    arch, text_width = smallest_text_tower(open_clip)
    unet = params.unet_config.params
    unet.update(use_checkpoint=False, model_channels=32, num_res_blocks=1, channel_mult=[1, 2],
                attention_resolutions=[2, 1], num_head_channels=16, transformer_depth=1, context_dim=text_width)
    vae = params.first_stage_config.params.ddconfig
    vae.update(ch=32, ch_mult=[1, 2, 4, 4], num_res_blocks=1)
    params.cond_stage_config.params.update(arch=arch, version=None, device="cpu")
    api.ISL_PATHS = {k: None for k in api.ISL_PATHS}  # build MiDaS empty: there is no weights file here
    model = instantiate_from_config(config.model).eval()
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from reference import rule_weights

    for parameter in model.model.parameters():  # ldm zero-initialises output layers: the UNet would ignore depth
        if not parameter.detach().abs().max():
            parameter.data.normal_(0, 0.05)
    # An untrained final LayerNorm (weight 1, bias 0) leaves every token's features with mean 0, so the whole
    # text conditioning's mean is float noise, exactly 0.0 for some prompts ("a house by a lake" with --plain):
    # the WebUI's emphasis step divides by that mean (sd_emphasis.EmphasisOriginal) and the UNet gets NaN.
    model.cond_stage_model.model.ln_final.bias.data.normal_(0.05, 0.05)
    if not args.plain:
        midas = model.depth_model.model
        midas.load_state_dict(rule_weights({k: tuple(v.shape) for k, v in midas.state_dict().items()}))
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    os.makedirs(args.out, exist_ok=True)
    save_file(state, os.path.join(args.out, f"{args.name}.safetensors"))
    OmegaConf.save(config, os.path.join(args.out, f"{args.name}.yaml"))
    print(os.path.join(args.out, f"{args.name}.safetensors"))


if __name__ == "__main__":
    main()
