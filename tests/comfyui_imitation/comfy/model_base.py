"""comfy/model_base.py (a125cd84): BaseModel's conditioning inputs and its concat into the UNet's input.

A UNet of more than 4 input channels is taken for an inpainting model (``set_inpaint``): ``concat_cond`` then
builds a mask and the masked latent (5 channels) for ``c_concat``, unless the conditioning holds
``noise_concat``, which replaces it (``extra_conds``). ``_apply_model`` concatenates ``c_concat`` to the
latent and calls the UNet. The sampling is EPS's (SD 2 depth is an EPS model).
"""

from enum import Enum

import torch

import comfy.conds
import comfy.model_management
import comfy.utils


class ModelType(Enum):
    EPS = 1


class SD15LatentFormat:
    scale_factor = 0.18215

    def process_in(self, latent):
        return latent * self.scale_factor


class ModelSamplingEPS:
    sigma_data = 1.0

    def calculate_input(self, sigma, noise):
        sigma = sigma.view(sigma.shape[:1] + (1,) * (noise.ndim - 1))
        return noise / (sigma ** 2 + self.sigma_data ** 2) ** 0.5

    def calculate_denoised(self, sigma, model_output, model_input):
        sigma = sigma.view(sigma.shape[:1] + (1,) * (model_output.ndim - 1))
        return model_input - model_output * sigma

    def timestep(self, sigma):
        return sigma


class BaseModel(torch.nn.Module):
    def __init__(self, model_config, model_type=ModelType.EPS, device=None, unet_model=None):
        super().__init__()
        self.latent_format = model_config.latent_format
        self.model_config = model_config
        self.diffusion_model = unet_model(**model_config.unet_config, device=device)
        self.model_type = model_type
        self.model_sampling = ModelSamplingEPS()
        self.concat_keys = ()

    def apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006
        return self._apply_model(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options={}, **kwargs):  # noqa: B006
        sigma = t
        xc = self.model_sampling.calculate_input(sigma, x)
        if c_concat is not None:
            xc = torch.cat([xc] + [comfy.model_management.cast_to_device(c_concat, xc.device, xc.dtype)], dim=1)
        context = c_crossattn
        dtype = self.get_dtype()
        xc = xc.to(dtype)
        t = self.model_sampling.timestep(t).float()
        if context is not None:
            context = comfy.model_management.cast_to_device(context, xc.device, dtype)
        model_output = self.diffusion_model(xc, t, context=context, control=control,
                                            transformer_options=transformer_options).float()
        return self.model_sampling.calculate_denoised(sigma, model_output, x)

    def get_dtype(self):
        return next(self.diffusion_model.parameters()).dtype

    def encode_adm(self, **kwargs):
        return None

    def concat_cond(self, **kwargs):
        """An inpainting model's extra input: the sampler's mask (all ones without one) and the latent it
        starts from (a blank picture's latent without a mask), at the noise's size and batch."""
        if not self.concat_keys:
            return None
        noise, device = kwargs.get("noise"), kwargs["device"]
        height, width = noise.shape[-2:]
        mask = kwargs.get("concat_mask", kwargs.get("denoise_mask"))
        latent = kwargs.get("concat_latent_image")
        latent = kwargs.get("latent_image") if latent is None else self.process_latent_in(latent)
        if latent.shape[1:] != noise.shape[1:]:
            latent = comfy.utils.common_upscale(latent, width, height, "bilinear", "center")
        latent = comfy.utils.resize_to_batch_size(latent, noise.shape[0])
        if mask is None:
            parts = {"mask": torch.ones_like(noise)[:, :1], "masked_image": self.blank_inpaint_image_like(noise)}
        else:
            mask = mask[:, :1] if mask.ndim == noise.ndim else mask
            mask = mask.reshape((-1, 1) + tuple(mask.shape[-2:]))
            if mask.shape[-2:] != noise.shape[-2:]:
                mask = comfy.utils.common_upscale(mask, width, height, "bilinear", "center")
            parts = {"mask": comfy.utils.resize_to_batch_size(mask.round(), noise.shape[0]).to(device),
                     "masked_image": latent.to(device)}
        return torch.cat([parts[key] for key in self.concat_keys], dim=1)

    def extra_conds(self, **kwargs):
        """The model conds of one conditioning entry; its ``noise_concat`` option, if any, replaces the concat."""
        out = {}
        concat = self.concat_cond(**kwargs)
        if concat is not None:
            out["c_concat"] = comfy.conds.CONDNoiseShape(concat)
        if kwargs.get("cross_attn") is not None:
            out["c_crossattn"] = comfy.conds.CONDCrossAttn(kwargs["cross_attn"])
        if kwargs.get("noise_concat") is not None:
            out["c_concat"] = comfy.conds.CONDNoiseShape(kwargs["noise_concat"])
        return out

    def process_latent_in(self, latent):
        return self.latent_format.process_in(latent)

    def set_inpaint(self):
        self.concat_keys = ("mask", "masked_image")
        zero_picture_latent = torch.tensor([0.8223, -0.6876, 0.6364, 0.1380])  # ComfyUI's figures
        self.blank_inpaint_image_like = lambda latent: torch.ones_like(latent) * zero_picture_latent.to(
            latent).view(1, -1, 1, 1)
