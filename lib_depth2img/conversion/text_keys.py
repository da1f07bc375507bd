"""OpenCLIP text tower (``cond_stage_model.model.*``) <-> transformers ``CLIPTextModel``.

SD2 reads the penultimate block's output, so diffusers keeps one block less and no
projection. Going back, the unused last block and ``text_projection`` are filled with zeros
and ``logit_scale`` with OpenCLIP's initial value: the WebUI never runs them.
"""

from __future__ import annotations

import math
import re

import torch

from lib_depth2img.conversion.plan import Planned, chunk_of, concatenated, constant, plan_renames, reversed_table

_LAYER = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."),
          ("mlp.c_proj.", "mlp.fc2."), ("attn.out_proj.", "self_attn.out_proj.")]
_FUSED = re.compile(r"^transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)$")
_SPLIT = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$")
_UNUSED = ("text_projection", "logit_scale")
_POSITION_IDS = "text_model.embeddings.position_ids"


def _table(layers: int) -> list[tuple[str, str, list]]:
    return [("token_embedding.", "text_model.embeddings.token_embedding.", []),
            ("positional_embedding", "text_model.embeddings.position_embedding.weight", []),
            ("ln_final.", "text_model.final_layer_norm.", [])] + [
        (f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}.", _LAYER) for i in range(layers)]


def _layer_count(index: dict, pattern: str) -> int:
    return 1 + max((int(m.group(1)) for m in map(re.compile(pattern).match, index) if m), default=-1)


def text_to_diffusers(index: dict) -> list[Planned]:
    kept = _layer_count(index, r"^transformer\.resblocks\.(\d+)\.") - 1
    last = f"transformer.resblocks.{kept}."
    plan, renamable = [], {}
    for key, info in index.items():
        fused = _FUSED.match(key)
        if key in _UNUSED or key.startswith(last):
            continue
        if fused:
            layer, kind = fused.groups()
            width = info.shape[0] // 3
            plan += [chunk_of(f"text_model.encoder.layers.{layer}.self_attn.{q}_proj.{kind}", key,
                              (width, *info.shape[1:]), part, 3) for part, q in enumerate("qkv")]
        else:
            renamable[key] = info
    positions = index["positional_embedding"].shape[0]
    return plan + plan_renames(renamable, _table(kept), "text encoder") + [
        constant(_POSITION_IDS, torch.arange(positions)[None])]


def text_to_ldm(index: dict) -> list[Planned]:
    layers = _layer_count(index, r"^text_model\.encoder\.layers\.(\d+)\.")
    plan, renamable = [], {}
    for key, info in index.items():
        split = _SPLIT.match(key)
        if split and split.group(2) == "q":
            layer, _, kind = split.groups()
            parts = [key.replace(".q_proj.", f".{q}_proj.") for q in "qkv"]
            plan.append(concatenated(f"transformer.resblocks.{layer}.attn.in_proj_{kind}", parts,
                                     (3 * info.shape[0], *info.shape[1:])))
        elif not split and key != _POSITION_IDS:
            renamable[key] = info
    plan += plan_renames(renamable, reversed_table(_table(layers)), "text encoder")
    width = index["text_model.final_layer_norm.weight"].shape[0]
    unused_block = [constant(p.name.replace(f"resblocks.{layers - 1}.", f"resblocks.{layers}."), torch.zeros(p.shape))
                    for p in plan if p.name.startswith(f"transformer.resblocks.{layers - 1}.")]
    return plan + unused_block + [constant("text_projection", torch.zeros(width, width)),
                                  constant("logit_scale", torch.tensor(math.log(1 / 0.07)))]
