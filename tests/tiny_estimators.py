"""Our own estimator classes built small, for tests where the network is not what is tested.

Adapter, pipeline, cache, CLI and conversion plumbing need a network with an estimator's interface, not
its 123 M parameters: a tiny DPT-Hybrid is the real ``DPTDepthModel`` (the same ResNet stem, hybrid patch
embedding, reassemble and fusion code) with one ResNet block per stage, a 2-block ViT of width 32 and a
16-channel decoder. Its state-dict keys are those of the release file, fewer and narrower, so
``detect_estimator`` (key presence for DPT-Hybrid) and the key conversions treat it as DPT-Hybrid. It
takes the same input (``DPT_INPUT``: normalised ``[B,3,h,w]``, sides multiples of 32) and gives the same
output (``[B,h,w]`` relative inverse depth); with the parity rule's weights its depth is not flat.

``use_tiny_estimators`` swaps the registry's builders, so every path that builds an estimator by name
(a checkpoint's depth slice, another estimator's release file) builds the small one.
"""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from reference import rule_weights
from torch import nn

from lib_depth2img.estimators import ESTIMATORS, create_estimator
from lib_depth2img.estimators.depth_anything import DepthAnythingConfig, DepthAnythingV2
from lib_depth2img.estimators.dpt import Decoder, DPTConfig, DPTDepthModel
from lib_depth2img.estimators.resnetv2 import Stage

# ResNet stages 128 channels wide (its GroupNorm takes 32 groups of the bottlenecks' quarter width), one block each.
TINY_DPT_HYBRID = DPTConfig(vit_dim=32, depth=2, heads=2, hybrid=True, taps=(0, 1), features=(128, 128, 32, 32))
TINY_DEPTH_ANYTHING = DepthAnythingConfig(dim=32, depth=4, heads=2, taps=(0, 1, 2, 3), features=16,
                                          out_channels=(8, 16, 32, 32))


def _initialised(module: nn.Module) -> nn.Module:
    """Built on the meta device (the full-size parts replaced are never allocated), then given torch's init."""
    module.to_empty(device="cpu")
    for part in module.modules():
        if hasattr(part, "reset_parameters"):
            part.reset_parameters()
    for name, parameter in module.named_parameters():
        if name.endswith(("cls_token", "pos_embed", "mask_token", "gamma")):  # plain Parameters: as built
            nn.init.constant_(parameter, 1.0 if name.endswith("gamma") else 0.0)
    return module


def tiny_dpt_hybrid() -> nn.Module:
    with torch.device("meta"):
        module = DPTDepthModel(TINY_DPT_HYBRID)
        embed = module.pretrained.model.patch_embed
        embed.backbone.stages = nn.Sequential(Stage(64, 128, 1, 1), Stage(128, 128, 2, 1), Stage(128, 128, 2, 1))
        embed.proj = nn.Conv2d(128, TINY_DPT_HYBRID.vit_dim, 1)
        module.scratch = Decoder(TINY_DPT_HYBRID.features, channels=16)
    return _initialised(module)


def tiny_depth_anything() -> nn.Module:
    with torch.device("meta"):
        module = DepthAnythingV2(TINY_DEPTH_ANYTHING)
    return _initialised(module)


TINY_BUILDERS = {"dpt_hybrid": tiny_dpt_hybrid, "depth_anything_v2_vits": tiny_depth_anything}


@functools.cache
def tiny_layout(name: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in TINY_BUILDERS[name]().state_dict().items()}


@functools.cache
def tiny_spec(name: str):
    """The registry's entry for ``name`` with the small network: same input rule, files, folders and
    signature keys; the signature's shapes, where it gives any, are the small network's own."""
    spec, layout = ESTIMATORS[name], tiny_layout(name)
    signature = {k: None if shape is None else layout[k] for k, shape in spec.signature.items()}
    return dataclasses.replace(spec, build=TINY_BUILDERS[name], signature=signature)


def use_tiny_estimators(monkeypatch) -> None:
    for name in TINY_BUILDERS:
        monkeypatch.setitem(ESTIMATORS, name, tiny_spec(name))


def create_tiny_estimator(name: str) -> nn.Module:
    """``create_estimator(name)``, built small."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_tiny_estimators(monkeypatch)
        return create_estimator(name)


def tiny_rule_state(name: str) -> dict[str, torch.Tensor]:
    """The small network's weights set by the parity fixture's rule (its depth map is not flat)."""
    return rule_weights(tiny_layout(name))
