"""modules/sd_models.py load_model with modules_forge/forge_loader.py load_model_for_a1111 (reForge 3b56b268),
reduced to the depth model: ldm's model is instantiated from the checkpoint's yaml, so its MiDaS network
comes from ldm.modules.midas.api.load_model; the checkpoint's state dict goes to Forge's own UNet, VAE and
CLIP objects and never into that network. Then the model_loaded callbacks run."""

from ldm.models.diffusion.ddpm import LatentDepth2ImageDiffusion
from modules import script_callbacks


def load_model(checkpoint_info):
    sd_model = LatentDepth2ImageDiffusion()
    sd_model.sd_checkpoint_info = checkpoint_info
    script_callbacks.model_loaded_callback(sd_model)
    return sd_model
