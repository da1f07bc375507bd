"""Shared pieces of the node tests against the small ComfyUI imitation in tests/comfyui_imitation: ComfyUI with
this repository in its custom_nodes (loaded as ComfyUI loads it), an SD2-depth-class model with a real 5-channel
first conv, and one sampling step as ComfyUI takes it."""

import asyncio
import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).parent.parent
IMITATION = Path(__file__).parent / "comfyui_imitation"
CHECKPOINT = "512-depth-ema.safetensors"
_IMITATION_MODULES = ("comfy", "folder_paths", "node_helpers", "nodes")


class ComfyUI:
    def __init__(self, base: Path):
        import comfy.model_management
        import folder_paths
        import nodes

        self.base, self.nodes, self.folder_paths = base, nodes, folder_paths
        self.model_management = comfy.model_management

    def node(self, name: str):
        return self.nodes.NODE_CLASS_MAPPINGS[name]()


@pytest.fixture()
def comfyui_base(tmp_path) -> Path:
    """ComfyUI's folder before it starts: models/checkpoints, input. Tests add files (and extra model paths)."""
    base = tmp_path / "ComfyUI"
    for folder in ("models/checkpoints", "input", "custom_nodes"):
        (base / folder).mkdir(parents=True)
    sys.path.insert(0, str(IMITATION))
    import folder_paths

    folder_paths.set_base_path(str(base))
    yield base
    sys.path.remove(str(IMITATION))
    pack = str(ROOT).replace(".", "_x_")  # the name ComfyUI imports the pack under
    for name in [n for n in sys.modules if n.split(".")[0] in _IMITATION_MODULES or n.startswith(pack)
                 or n.startswith("lib_depth2img.comfyui")]:
        del sys.modules[name]
    root = logging.getLogger()
    for log_filter in [f for f in root.filters if type(f).__name__ == "DepthModelErrorNote"]:
        root.removeFilter(log_filter)


@pytest.fixture()
def comfyui(comfyui_base) -> ComfyUI:
    """The imitation started with this repository as a custom node folder, loaded by ``nodes.load_custom_node``."""
    import nodes

    assert asyncio.run(nodes.load_custom_node(str(ROOT)))
    return ComfyUI(comfyui_base)


@pytest.fixture()
def depth_checkpoint_in_comfyui(comfyui, tiny_estimators, tiny_depth_checkpoint_file) -> str:
    """The small depth checkpoint in ComfyUI's models/checkpoints (its depth slice is the small DPT-Hybrid)."""
    (comfyui.base / "models" / "checkpoints" / CHECKPOINT).symlink_to(tiny_depth_checkpoint_file)
    return CHECKPOINT


class TinyUNet(nn.Module):
    """An SD2-class UNet cut down to its first conv (SD2's ``input_blocks.0.0``), the text's pull and an output
    conv: enough for ComfyUI's concat to meet a real 5-channel convolution."""

    def __init__(self, in_channels: int, model_channels: int = 8, context_dim: int = 16, device=None):
        super().__init__()
        self.input_blocks = nn.ModuleList([nn.Sequential(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        self.context = nn.Linear(context_dim, model_channels)
        self.out = nn.Conv2d(model_channels, 4, 3, padding=1)

    def forward(self, x, timesteps=None, context=None, **kwargs):
        h = self.input_blocks[0](x)
        if context is not None:
            h = h + self.context(context.mean(dim=1))[:, :, None, None]
        return self.out(h)


def depth_model(in_channels: int = 5):
    """SD 2 depth as ComfyUI builds it: its config's ``get_model``, which makes a >4-channel UNet an inpainting one."""
    from comfy.supported_models_base import BASE

    return BASE({"in_channels": in_channels}).get_model({}, unet_model=TinyUNet)


def text(seed: int = 0, batch: int = 1) -> list:
    """A CONDITIONING as CLIPTextEncode gives it: one entry, a [B,77,width] tensor and its options."""
    return [[torch.randn(batch, 77, 16, generator=torch.Generator().manual_seed(seed)), {}]]


class FirstConvInputs:
    """What the UNet's first conv receives, call by call."""

    def __init__(self, model):
        self.calls = []
        self.handle = model.diffusion_model.input_blocks[0][0].register_forward_pre_hook(
            lambda module, inputs: self.calls.append(inputs[0].detach().clone()))


def sample_step(model, positive, negative, latent: dict, seed: int = 0) -> list[torch.Tensor]:
    """One model call of a KSampler, as ComfyUI makes it: the latent taken in, the conds encoded by the model
    (the noise mask as the denoise mask), cond and uncond batched when they can be."""
    from comfy import sampler_helpers, samplers

    samples = latent["samples"]
    noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(seed))
    conds = {"positive": sampler_helpers.convert_cond(positive), "negative": sampler_helpers.convert_cond(negative)}
    conds = samplers.process_conds(model, noise, conds, torch.device("cpu"),
                                   latent_image=model.process_latent_in(samples),
                                   denoise_mask=latent.get("noise_mask"), seed=seed)
    sigma = torch.full((samples.shape[0],), 14.6)
    return samplers.calc_cond_batch(model, [conds["positive"], conds["negative"]], noise * 14.6, sigma)
