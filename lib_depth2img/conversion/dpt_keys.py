"""MiDaS DPT-Hybrid (timm names, as in ``depth_model.model.*``) <-> transformers' ``DPTForDepthEstimation``.

The attention's fused ``qkv`` is split into query/key/value and back; transformers keeps no ViT
classifier head, so going back fills MiDaS's unused ``head`` with zeros for a strict load.
"""

from __future__ import annotations

import re

import torch

from lib_depth2img.conversion.plan import Planned, apply_plan, chunk_of, concatenated, constant, renamed
from lib_depth2img.conversion.tensor_files import StateDictSource
from lib_depth2img.errors import Depth2ImgError

_RENAMES = [  # (MiDaS pattern, transformers replacement), applied in order, first match wins
    (r"^pretrained\.model\.cls_token$", "dpt.embeddings.cls_token"),
    (r"^pretrained\.model\.pos_embed$", "dpt.embeddings.position_embeddings"),
    (r"^pretrained\.model\.patch_embed\.backbone\.stem\.conv\.", "dpt.embeddings.backbone.bit.embedder.convolution."),
    (r"^pretrained\.model\.patch_embed\.backbone\.stem\.norm\.", "dpt.embeddings.backbone.bit.embedder.norm."),
    (r"^pretrained\.model\.patch_embed\.backbone\.stages\.(\d+)\.blocks\.(\d+)\.",
     r"dpt.embeddings.backbone.bit.encoder.stages.\1.layers.\2."),
    (r"^pretrained\.model\.patch_embed\.proj\.", "dpt.embeddings.projection."),
    (r"^pretrained\.model\.blocks\.(\d+)\.norm1\.", r"dpt.encoder.layer.\1.layernorm_before."),
    (r"^pretrained\.model\.blocks\.(\d+)\.norm2\.", r"dpt.encoder.layer.\1.layernorm_after."),
    (r"^pretrained\.model\.blocks\.(\d+)\.attn\.proj\.", r"dpt.encoder.layer.\1.attention.output.dense."),
    (r"^pretrained\.model\.blocks\.(\d+)\.mlp\.fc1\.", r"dpt.encoder.layer.\1.intermediate.dense."),
    (r"^pretrained\.model\.blocks\.(\d+)\.mlp\.fc2\.", r"dpt.encoder.layer.\1.output.dense."),
    (r"^pretrained\.model\.norm\.", "dpt.layernorm."),
    (r"^pretrained\.act_postprocess([34])\.0\.project\.0\.", lambda m: f"neck.reassemble_stage.readout_projects."
                                                                      f"{int(m.group(1)) - 1}.0."),
    (r"^pretrained\.act_postprocess([34])\.3\.", lambda m: f"neck.reassemble_stage.layers.{int(m.group(1)) - 1}"
                                                           f".projection."),
    (r"^pretrained\.act_postprocess4\.4\.", "neck.reassemble_stage.layers.3.resize."),
    (r"^scratch\.layer([1-4])_rn\.", lambda m: f"neck.convs.{int(m.group(1)) - 1}."),
    # transformers fuses from the deepest level first: refinenet4 is its layer 0
    (r"^scratch\.refinenet([1-4])\.out_conv\.", lambda m: f"neck.fusion_stage.layers.{4 - int(m.group(1))}."
                                                          f"projection."),
    (r"^scratch\.refinenet([1-4])\.resConfUnit([12])\.conv([12])\.",
     lambda m: f"neck.fusion_stage.layers.{4 - int(m.group(1))}.residual_layer{m.group(2)}."
               f"convolution{m.group(3)}."),
    (r"^scratch\.output_conv\.(\d)\.", r"head.head.\1."),
]
_QKV = re.compile(r"^pretrained\.model\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_HEAD = re.compile(r"^pretrained\.model\.head\.")


def _rename(key: str) -> str:
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    raise KeyError(f"no transformers name for MiDaS key {key}")


def dpt_to_transformers(index: dict) -> list[Planned]:
    plan = []
    for key, info in index.items():
        qkv = _QKV.match(key)
        if qkv:
            block, kind = qkv.groups()
            plan += [chunk_of(f"dpt.encoder.layer.{block}.attention.attention.{name}.{kind}", key,
                              (info.shape[0] // 3, *info.shape[1:]), part, 3)
                     for part, name in enumerate(("query", "key", "value"))]
        elif not _HEAD.match(key):
            plan.append(renamed(_rename(key), key, info.shape))
    return plan


def dpt_to_midas(index: dict, layout: dict[str, tuple[int, ...]]) -> list[Planned]:
    """``layout``: MiDaS key -> shape (our estimator's state_dict) says which keys to produce."""
    plan = []
    for key, shape in layout.items():
        qkv = _QKV.match(key)
        if qkv:
            block, kind = qkv.groups()
            prefix = f"dpt.encoder.layer.{block}.attention.attention."
            plan.append(concatenated(key, [prefix + f"{name}.{kind}" for name in ("query", "key", "value")], shape))
        elif _HEAD.match(key):
            plan.append(constant(key, torch.zeros(shape)))  # MiDaS never uses the ViT classifier
        else:
            source = _rename(key)
            if source not in index:
                raise Depth2ImgError(f"The depth estimator lacks {source}: it is not DPT-Hybrid "
                                     "(Intel/dpt-hybrid-midas), the estimator SD2 depth was trained with.")
            plan.append(renamed(key, source, shape))
    return plan


def midas_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return apply_plan(dpt_to_transformers(StateDictSource(state).index), state)


def transformers_to_midas(state: dict[str, torch.Tensor],
                          layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return apply_plan(dpt_to_midas(StateDictSource(state).index, layout), state)
