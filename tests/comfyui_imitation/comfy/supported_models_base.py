"""comfy/supported_models_base.py (a125cd84): a model config builds its model, and a UNet of more than 4 input
channels (inpainting 9, SD 2 depth 5) is made an inpainting model."""

from comfy import model_base


class BASE:
    latent_format = model_base.SD15LatentFormat

    def __init__(self, unet_config):
        self.unet_config = unet_config.copy()
        self.latent_format = self.latent_format()

    def inpaint_model(self):
        return self.unet_config["in_channels"] > 4

    def get_model(self, state_dict, prefix="", device=None, unet_model=None):
        """``unet_model`` is the UNet class here (ComfyUI's is always its own UNetModel, not importable in CI)."""
        out = model_base.BaseModel(self, model_type=model_base.ModelType.EPS, device=device, unet_model=unet_model)
        if self.inpaint_model():
            out.set_inpaint()
        return out
