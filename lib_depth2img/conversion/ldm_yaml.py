"""The ldm config (``OUT.yaml``) of a depth model, made from its diffusers configs.

Its shape is that of SD2's ``v2-midas-inference.yaml``, which the WebUI reads beside a
checkpoint; sizes, schedule and prediction type come from the diffusers folder.
"""

from __future__ import annotations

from lib_depth2img.errors import Depth2ImgError

OPENCLIP_VIT_H = {"hidden_size": 1024, "num_hidden_layers": 23, "num_attention_heads": 16}  # diffusers' view of it
_PARAMETERIZATION = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
_BETA_SCHEDULES = {"scaled_linear": "linear", "linear": "sqrt_linear"}  # diffusers name -> ldm name
SD2_DEPTH = {  # what the yaml needs of stabilityai/stable-diffusion-2-depth's configs
    "unet": {"block_out_channels": [320, 640, 1280, 1280], "attention_head_dim": [5, 10, 20, 20],
             "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "layers_per_block": 2,
             "in_channels": 5, "out_channels": 4, "cross_attention_dim": 1024, "use_linear_projection": True,
             "sample_size": 32},
    "vae": {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "in_channels": 3, "out_channels": 3,
            "latent_channels": 4, "sample_size": 256},
    "text_encoder": OPENCLIP_VIT_H,
    "scheduler": {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
                  "num_train_timesteps": 1000, "prediction_type": "epsilon"},
}


def depth_yaml(unet: dict, vae: dict, text_encoder: dict, scheduler: dict) -> dict:
    for key, value in OPENCLIP_VIT_H.items():
        if text_encoder.get(key) != value:
            raise Depth2ImgError(f"The text encoder has {key} = {text_encoder.get(key)}, not {value}: it is not "
                                 "SD2's OpenCLIP ViT-H/14, which the WebUI's depth model is built with.")
    prediction = scheduler.get("prediction_type", "epsilon")
    schedule = scheduler.get("beta_schedule", "scaled_linear")
    if prediction not in _PARAMETERIZATION or schedule not in _BETA_SCHEDULES:
        raise Depth2ImgError(f"The scheduler config has prediction_type {prediction!r} and beta_schedule "
                             f"{schedule!r}; the WebUI's model supports {sorted(_PARAMETERIZATION)} and "
                             f"{sorted(_BETA_SCHEDULES)}.")
    channels = unet["block_out_channels"]
    heads = unet["attention_head_dim"]  # diffusers' name; SD2's configs give the number of heads per level
    heads = heads if isinstance(heads, list) else [heads] * len(channels)
    if len({c // h for c, h in zip(channels, heads, strict=True)}) != 1:
        raise Depth2ImgError(f"The UNet's attention heads {heads} for channels {channels} are not all of one width; "
                             "ldm's UNet needs one head width.")
    vae_channels = vae["block_out_channels"]
    attention_resolutions = [2 ** level for level, kind in enumerate(unet["down_block_types"]) if "CrossAttn" in kind]
    attention_resolutions.reverse()  # as SD2's yaml lists them
    return {"model": {
        "base_learning_rate": 5.0e-07,
        "target": "ldm.models.diffusion.ddpm.LatentDepth2ImageDiffusion",
        "params": {
            "linear_start": scheduler.get("beta_start", 0.00085), "linear_end": scheduler.get("beta_end", 0.012),
            "beta_schedule": _BETA_SCHEDULES[schedule], "parameterization": _PARAMETERIZATION[prediction],
            "num_timesteps_cond": 1, "log_every_t": 200, "timesteps": scheduler.get("num_train_timesteps", 1000),
            "first_stage_key": "jpg", "cond_stage_key": "txt", "image_size": 64,
            "channels": vae["latent_channels"], "cond_stage_trainable": False, "conditioning_key": "hybrid",
            "scale_factor": vae.get("scaling_factor", 0.18215), "monitor": "val/loss_simple_ema",
            "finetune_keys": None, "use_ema": False,
            "depth_stage_config": {"target": "ldm.modules.midas.api.MiDaSInference",
                                   "params": {"model_type": "dpt_hybrid"}},
            "unet_config": {"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": {
                "use_checkpoint": True, "image_size": unet.get("sample_size", 32), "in_channels": unet["in_channels"],
                "out_channels": unet["out_channels"], "model_channels": channels[0],
                "attention_resolutions": attention_resolutions,
                "num_res_blocks": unet["layers_per_block"], "channel_mult": [c // channels[0] for c in channels],
                "num_head_channels": channels[0] // heads[0], "use_spatial_transformer": True,
                "use_linear_in_transformer": unet.get("use_linear_projection", False), "transformer_depth": 1,
                "context_dim": unet["cross_attention_dim"], "legacy": False}},
            "first_stage_config": {"target": "ldm.models.autoencoder.AutoencoderKL", "params": {
                "embed_dim": vae["latent_channels"], "monitor": "val/rec_loss",
                "ddconfig": {"double_z": True, "z_channels": vae["latent_channels"],
                             "resolution": vae.get("sample_size", 256), "in_channels": vae["in_channels"],
                             "out_ch": vae["out_channels"], "ch": vae_channels[0],
                             "ch_mult": [c // vae_channels[0] for c in vae_channels],
                             "num_res_blocks": vae["layers_per_block"], "attn_resolutions": [], "dropout": 0.0},
                "lossconfig": {"target": "torch.nn.Identity"}}},
            "cond_stage_config": {"target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
                                  "params": {"freeze": True, "layer": "penultimate"}},
        }}}
