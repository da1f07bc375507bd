"""ldm ``UNetModel`` (``model.diffusion_model.*``) <-> diffusers ``UNet2DConditionModel``: names only.

Block numbering follows the diffusers config: ldm counts input blocks flat (conv_in, then per
level its resnets and a downsampler), diffusers per level. Transformer internals share names.
"""

from __future__ import annotations

from lib_depth2img.conversion.plan import Planned, plan_renames, reversed_table

_RESNET = [("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("out_layers.0.", "norm2."),
           ("out_layers.3.", "conv2."), ("emb_layers.1.", "time_emb_proj."), ("skip_connection.", "conv_shortcut.")]


def _table(config: dict) -> list[tuple[str, str, list]]:
    levels, layers = len(config["block_out_channels"]), config["layers_per_block"]
    down_attention = ["CrossAttn" in kind for kind in config["down_block_types"]]
    up_attention = ["CrossAttn" in kind for kind in config["up_block_types"]]
    table = [("time_embed.0.", "time_embedding.linear_1.", []), ("time_embed.2.", "time_embedding.linear_2.", []),
             ("input_blocks.0.0.", "conv_in.", []), ("out.0.", "conv_norm_out.", []), ("out.2.", "conv_out.", []),
             ("middle_block.0.", "mid_block.resnets.0.", _RESNET), ("middle_block.1.", "mid_block.attentions.0.", []),
             ("middle_block.2.", "mid_block.resnets.1.", _RESNET)]
    for level in range(levels):
        for layer in range(layers):
            block = 1 + level * (layers + 1) + layer
            table.append((f"input_blocks.{block}.0.", f"down_blocks.{level}.resnets.{layer}.", _RESNET))
            if down_attention[level]:
                table.append((f"input_blocks.{block}.1.", f"down_blocks.{level}.attentions.{layer}.", []))
        if level < levels - 1:
            table.append((f"input_blocks.{(level + 1) * (layers + 1)}.0.op.",
                          f"down_blocks.{level}.downsamplers.0.conv.", []))
        for layer in range(layers + 1):
            block = level * (layers + 1) + layer
            table.append((f"output_blocks.{block}.0.", f"up_blocks.{level}.resnets.{layer}.", _RESNET))
            if up_attention[level]:
                table.append((f"output_blocks.{block}.1.", f"up_blocks.{level}.attentions.{layer}.", []))
        if level < levels - 1:
            block = level * (layers + 1) + layers
            table.append((f"output_blocks.{block}.{2 if up_attention[level] else 1}.",
                          f"up_blocks.{level}.upsamplers.0.", []))
    return table


def unet_to_diffusers(index: dict, config: dict) -> list[Planned]:
    return plan_renames(index, _table(config), "UNet")


def unet_to_ldm(index: dict, config: dict) -> list[Planned]:
    return plan_renames(index, reversed_table(_table(config)), "UNet")
