"""Test-only WebUI extension (tests/comfyui parity test): records what the UNet's first conv receives.

For each generation a forward pre-hook on ``diffusion_model.input_blocks[0][0]`` saves the input of its first
call (noisy latent + depth, cond and uncond rows) to ``<data dir>/depth2img_probe/last.pt``, the WebUI's side of
what tests/comfyui/probe_nodes records in ComfyUI.
"""

import os

import torch
from modules import paths_internal, scripts


class Script(scripts.Script):
    handle = None

    def title(self):
        return "depth2img test probe"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def process(self, p, *args):
        self._remove()  # a failed generation skips postprocess
        path = os.path.join(paths_internal.data_path, "depth2img_probe", "last.pt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)

        def record(module, inputs):
            if not os.path.exists(path):
                torch.save({"conv_input": inputs[0].detach().float().cpu().clone(),
                            "conv_input_dtype": str(inputs[0].dtype).replace("torch.", ""),
                            "first_conv_weight_shape": tuple(module.weight.shape),
                            "latent_shape": (inputs[0].shape[0], 4, *inputs[0].shape[-2:])}, path)

        self.handle = p.sd_model.model.diffusion_model.input_blocks[0][0].register_forward_pre_hook(record)

    def postprocess(self, p, processed, *args):
        self._remove()

    def _remove(self):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
