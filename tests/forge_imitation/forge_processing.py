"""Forge's img2img/txt2img flow (modules/processing.py at dfdcbab6), reduced to what the depth path touches."""

import torch
from modules import processing, shared
from modules.processing import run_hook


class ChannelError(RuntimeError):
    pass


class FakeInitialModel:
    """modules/sd_models.py: what ``shared.sd_model`` is until the first generation loads a model."""

    def __init__(self):
        self.cond_stage_model = None
        self.chunk_length = 75


class StableDiffusionProcessingImg2Img(processing.StableDiffusionProcessingImg2Img):
    def __init__(self, *args, model_to_load=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_to_load = model_to_load  # what forge_model_reload will load: the one the person picked

    def depth2img_image_conditioning(self, source_image):
        raise NotImplementedError("NotImplementedError: depth2img_image_conditioning")

    def img2img_image_conditioning(self, source_image, latent_image, image_mask=None, round_image_mask=True):
        if self.sd_model.is_inpaint:  # mask (1) + masked-image latent (4)
            return latent_image.new_zeros(latent_image.shape[0], 5, *latent_image.shape[-2:])
        return latent_image.new_zeros(latent_image.shape[0], 5, 1, 1)

    def sample(self, scripts):
        run_hook("process_before_every_sampling", scripts, self, x=self.init_latent)
        self.sampled_with.append(self.image_conditioning)
        unet_input(self.sd_model, self.init_latent, self.image_conditioning)  # what the UNet's first conv gets
        return self.init_latent


class StableDiffusionProcessingTxt2Img(processing.StableDiffusionProcessingTxt2Img):
    """Forge's txt2img asks the same methods as the original's, pass by pass; its UNet input is Forge's."""

    def __init__(self, *args, model_to_load=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.model_to_load = model_to_load

    def txt2img_image_conditioning(self, x, width=None, height=None):
        if self.sd_model.is_inpaint:  # a fully masked picture: mask (1) + latent (4)
            return x.new_zeros(x.shape[0], 5, *x.shape[-2:])
        return x.new_zeros(x.shape[0], 5, 1, 1)

    img2img_image_conditioning = StableDiffusionProcessingImg2Img.img2img_image_conditioning

    def unet_input(self, x, image_conditioning):
        return unet_input(self.sd_model, x, image_conditioning)


def unet_input(sd_model, x, image_cond):
    """backend/sampling/sampling_function.py: c_concat only if batch and size match x; k_model.py concatenates;
    the first conv takes ``in_channels`` or fails as torch does."""
    if image_cond.shape[0] == x.shape[0] and image_cond.shape[2:] == x.shape[2:]:
        x = torch.cat([x, image_cond.to(x)], dim=1)
    expected = sd_model.forge_objects.unet.model.diffusion_model.in_channels
    if x.shape[1] != expected:
        raise ChannelError(f"expected input{list(x.shape)} to have {expected} channels, but got {x.shape[1]} "
                           "channels instead")
    return x


def process_images(p, scripts):
    run_hook("before_process", scripts, p)
    shared.sd_model = p.model_to_load  # forge_model_reload: the model loads only now
    run_hook("process", scripts, p)
    p.init([], [], [])
    for _ in range(p.n_iter):
        p.sample(scripts)
    processed = processing.Processed(p, [None] * (p.batch_size * p.n_iter))
    run_hook("postprocess", scripts, p, processed)
    return processed
