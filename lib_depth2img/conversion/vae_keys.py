"""ldm ``AutoencoderKL`` (``first_stage_model.*``) <-> diffusers ``AutoencoderKL``.

ldm's mid-block attention uses 1x1 convolutions where diffusers uses linear layers: same
numbers, shapes ``[C, C, 1, 1]`` and ``[C, C]``. diffusers is written with its 2022 attention
names (query/key/value/proj_attn), which every diffusers version loads; the newer names
(to_q/to_k/to_v/to_out.0) are read too.
"""

from __future__ import annotations

from dataclasses import replace

from lib_depth2img.conversion.plan import Planned, plan_renames, reshaped, reversed_table

_ATTENTION = [("norm.", "group_norm."), ("q.", "query."), ("k.", "key."), ("v.", "value."), ("proj_out.", "proj_attn.")]
_MODERN_NAMES = {"to_q.": "query.", "to_k.": "key.", "to_v.": "value.", "to_out.0.": "proj_attn."}
_RESNET = [("nin_shortcut.", "conv_shortcut.")]
_PROJECTIONS = ("query.weight", "key.weight", "value.weight", "proj_attn.weight")


def _table(config: dict) -> list[tuple[str, str, list]]:
    levels, layers = len(config["block_out_channels"]), config["layers_per_block"]
    table = [("quant_conv.", "quant_conv.", []), ("post_quant_conv.", "post_quant_conv.", [])]
    for coder in ("encoder", "decoder"):
        table += [(f"{coder}.conv_in.", f"{coder}.conv_in.", []), (f"{coder}.conv_out.", f"{coder}.conv_out.", []),
                  (f"{coder}.norm_out.", f"{coder}.conv_norm_out.", []),
                  (f"{coder}.mid.attn_1.", f"{coder}.mid_block.attentions.0.", _ATTENTION)]
        table += [(f"{coder}.mid.block_{i + 1}.", f"{coder}.mid_block.resnets.{i}.", _RESNET) for i in range(2)]
    for level in range(levels):
        up = levels - 1 - level  # diffusers counts the decoder's levels from the deepest
        table += [(f"encoder.down.{level}.block.{j}.", f"encoder.down_blocks.{level}.resnets.{j}.",
                   _RESNET) for j in range(layers)]
        table += [(f"decoder.up.{up}.block.{j}.", f"decoder.up_blocks.{level}.resnets.{j}.",
                   _RESNET) for j in range(layers + 1)]
        if level < levels - 1:
            table.append((f"encoder.down.{level}.downsample.", f"encoder.down_blocks.{level}.downsamplers.0.", []))
            table.append((f"decoder.up.{up}.upsample.", f"decoder.up_blocks.{level}.upsamplers.0.", []))
    return table


def _with_2022_names(key: str) -> str:
    head, marker, tail = key.partition("mid_block.attentions.0.")
    for modern, old in _MODERN_NAMES.items():
        if tail.startswith(modern):
            return head + marker + old + tail[len(modern):]
    return key


def vae_to_diffusers(index: dict, config: dict) -> list[Planned]:
    plan = plan_renames(index, _table(config), "VAE")
    return [reshaped(p.name, p.sources[0], p.shape[:2]) if p.name.endswith(_PROJECTIONS) else p for p in plan]


def vae_to_ldm(index: dict, config: dict) -> list[Planned]:
    names = {_with_2022_names(key): key for key in index}
    plan = plan_renames({new: index[old] for new, old in names.items()}, reversed_table(_table(config)), "VAE")
    return [reshaped(p.name, names[p.sources[0]], (*p.shape, 1, 1)) if p.sources[0].endswith(_PROJECTIONS)
            else replace(p, sources=(names[p.sources[0]],)) for p in plan]
