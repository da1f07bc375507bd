"""The diffusers configs of a depth model, made from its ldm config (the yaml beside a checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

from lib_depth2img.conversion.ldm_yaml import OPENCLIP_VIT_H
from lib_depth2img.errors import Depth2ImgError

DIFFUSERS_LAYOUT_VERSION = "0.14.0"  # the names written (2022 VAE attention) are those of this release
_PREDICTION_TYPES = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
_BETA_SCHEDULES = {"linear": "scaled_linear", "sqrt_linear": "linear"}
_DPT_HYBRID = Path(__file__).with_name("dpt_hybrid_config.json")


def diffusers_configs(yaml: dict, dtype: str) -> dict[str, dict]:
    """Config per component folder, plus ``model_index`` for the folder itself."""
    params = yaml["model"]["params"]
    unet, ddconfig = params["unet_config"]["params"], params["first_stage_config"]["params"]["ddconfig"]
    if params.get("depth_stage_config", {}).get("params", {}).get("model_type", "dpt_hybrid") != "dpt_hybrid":
        raise Depth2ImgError("Only depth models with the DPT-Hybrid estimator convert to diffusers; "
                             "diffusers' depth pipeline has no other.")
    if params.get("beta_schedule", "linear") not in _BETA_SCHEDULES:
        raise Depth2ImgError(f"The yaml's beta_schedule {params['beta_schedule']!r} has no diffusers equivalent.")
    channels = [unet["model_channels"] * m for m in unet["channel_mult"]]
    attention = [2 ** level in unet["attention_resolutions"] for level in range(len(channels))]
    version = {"_diffusers_version": DIFFUSERS_LAYOUT_VERSION}
    return {
        "model_index": {"_class_name": "StableDiffusionDepth2ImgPipeline", **version,
                        "depth_estimator": ["transformers", "DPTForDepthEstimation"],
                        "feature_extractor": ["transformers", "DPTImageProcessor"],
                        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
                        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
                        "vae": ["diffusers", "AutoencoderKL"]},
        "unet": {"_class_name": "UNet2DConditionModel", **version, "act_fn": "silu",
                 "attention_head_dim": [c // unet["num_head_channels"] for c in channels],
                 "block_out_channels": channels, "center_input_sample": False,
                 "cross_attention_dim": unet["context_dim"],
                 "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
                 "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
                 "in_channels": unet["in_channels"], "layers_per_block": unet["num_res_blocks"],
                 "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "num_class_embeds": None,
                 "only_cross_attention": False, "out_channels": unet["out_channels"],
                 "sample_size": unet.get("image_size", 32),
                 "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)],
                 "use_linear_projection": unet.get("use_linear_in_transformer", False)},
        "vae": {"_class_name": "AutoencoderKL", **version, "act_fn": "silu",
                "block_out_channels": [ddconfig["ch"] * m for m in ddconfig["ch_mult"]],
                "down_block_types": ["DownEncoderBlock2D"] * len(ddconfig["ch_mult"]),
                "in_channels": ddconfig["in_channels"], "latent_channels": ddconfig["z_channels"],
                "layers_per_block": ddconfig["num_res_blocks"], "norm_num_groups": 32,
                "out_channels": ddconfig["out_ch"], "sample_size": ddconfig["resolution"],
                "scaling_factor": params.get("scale_factor", 0.18215),
                "up_block_types": ["UpDecoderBlock2D"] * len(ddconfig["ch_mult"])},
        "text_encoder": {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
                         "dropout": 0.0, "eos_token_id": 2, "hidden_act": "gelu", "initializer_factor": 1.0,
                         "initializer_range": 0.02, "intermediate_size": 4096, "layer_norm_eps": 1e-05,
                         "max_position_embeddings": 77, "model_type": "clip_text_model", "pad_token_id": 1,
                         "projection_dim": 512, "torch_dtype": dtype, "vocab_size": 49408, **OPENCLIP_VIT_H},
        "depth_estimator": {**json.loads(_DPT_HYBRID.read_text()), "torch_dtype": dtype},
        "scheduler": {"_class_name": "PNDMScheduler", **version, "beta_start": params.get("linear_start", 0.0001),
                      "beta_end": params.get("linear_end", 0.02),
                      "beta_schedule": _BETA_SCHEDULES[params.get("beta_schedule", "linear")],
                      "clip_sample": False, "num_train_timesteps": params.get("timesteps", 1000),
                      "prediction_type": _PREDICTION_TYPES[params.get("parameterization", "eps")],
                      "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None},
    }
