"""MiDaS DPT-Hybrid keys <-> the transformers DPT layout of stabilityai/stable-diffusion-2-depth."""

import torch
from reference import load_reference, reference_layout, rule_weights

from lib_depth2img.conversion.dpt_keys import midas_to_transformers, transformers_to_midas

DIFFUSERS_DEPTH = {k: tuple(v[0]) for k, v in
                   load_reference("diffusers-sd2-depth.json")["components"]["depth_estimator"]["tensors"].items()}
MIDAS = reference_layout("midas-dpt_hybrid.json")


def test_midas_keys_become_exactly_the_diffusers_depth_estimator_keys():
    converted = midas_to_transformers(rule_weights(MIDAS))
    assert {k: tuple(v.shape) for k, v in converted.items()} == DIFFUSERS_DEPTH


def test_transformers_to_midas_and_back_is_identical():
    transformers_state = midas_to_transformers(rule_weights(MIDAS))
    midas_state = transformers_to_midas(transformers_state, MIDAS)
    assert {k: tuple(v.shape) for k, v in midas_state.items()} == MIDAS
    again = midas_to_transformers(midas_state)
    assert again.keys() == transformers_state.keys()
    assert all(torch.equal(again[k], transformers_state[k]) for k in again)


def test_attention_is_split_in_query_key_value_order():
    state = rule_weights(MIDAS)
    converted = midas_to_transformers(state)
    qkv = state["pretrained.model.blocks.4.attn.qkv.weight"]
    assert torch.equal(converted["dpt.encoder.layer.4.attention.attention.key.weight"], qkv[768:1536])
    assert torch.equal(converted["neck.fusion_stage.layers.0.projection.weight"],
                       state["scratch.refinenet4.out_conv.weight"])
