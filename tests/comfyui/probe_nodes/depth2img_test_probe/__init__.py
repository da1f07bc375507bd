"""Test-only ComfyUI node: records what the UNet's first convolution receives (tests/comfyui only).

``Depth2ImgTestProbe`` takes a MODEL and gives a clone whose UNet calls are wrapped: in the first call a
forward pre-hook on ``diffusion_model.input_blocks[0][0]`` (the first conv) saves that conv's input, its weight's
shape and the ``c_concat`` ComfyUI handed to the model to ``output/depth2img_probe/<name>.pt``.
"""

import os

import folder_paths
import torch


class Depth2ImgTestProbe:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "name": ("STRING", {"default": "probe"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "probe"
    CATEGORY = "testing"

    def probe(self, model, name):
        path = os.path.join(folder_paths.get_output_directory(), "depth2img_probe", f"{name}.pt")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.exists(path):
            os.remove(path)

        def wrapper(apply_model, args):
            if os.path.exists(path):
                return apply_model(args["input"], args["timestep"], **args["c"])
            first_conv = apply_model.__self__.diffusion_model.input_blocks[0][0]
            concat = args["c"].get("c_concat")

            def record(module, inputs):  # saved before the conv runs, so a failing conv is recorded too
                torch.save({"conv_input": inputs[0].detach().float().cpu().clone(),
                            "conv_input_dtype": str(inputs[0].dtype).replace("torch.", ""),
                            "first_conv_weight_shape": tuple(module.weight.shape),
                            "c_concat": None if concat is None else concat.detach().float().cpu().clone(),
                            "latent_shape": tuple(args["input"].shape),
                            "cond_or_uncond": list(args["cond_or_uncond"])}, path)

            handle = first_conv.register_forward_pre_hook(record)
            try:
                return apply_model(args["input"], args["timestep"], **args["c"])
            finally:
                handle.remove()

        patched = model.clone()
        patched.set_model_unet_function_wrapper(wrapper)
        return (patched,)


NODE_CLASS_MAPPINGS = {"Depth2ImgTestProbe": Depth2ImgTestProbe}
