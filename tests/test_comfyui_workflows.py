"""The example workflows (workflows/): each UI workflow and its API twin describe the same graph; our nodes get
every input they require (POST /prompt fills in no defaults) with the contract's file names; every KSampler of
a depth checkpoint samples with depth on both sides at its own latent's size; the second pass reuses the depth.
Running them is the opt-in real-ComfyUI suite's part (tests/comfyui/)."""

import json

import pytest
from comfyui_helpers import CHECKPOINT, ROOT

WORKFLOWS = ("img2img_depth", "txt2img_from_depth_map", "inpaint_depth", "upscale_second_pass")
FILES = {"depth2img_example.png", "depth2img_example_depth.png", "depth2img_example_mask.png"}
FRONTEND_EXTRAS = {"seed": "fixed", "image": "image"}  # control_after_generate; an image_upload combo's button


def _load(name):
    return (json.loads((ROOT / "workflows" / f"{name}.json").read_text()),
            json.loads((ROOT / "workflows" / f"{name}_api.json").read_text()))


def _is_link(value):
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)


@pytest.mark.parametrize("name", WORKFLOWS)
def test_the_ui_workflow_and_its_api_twin_are_the_same_graph(name):
    ui, api = _load(name)
    assert ui["version"] == 0.4 and ui["last_link_id"] == len(ui["links"])
    assert {str(node["id"]) for node in ui["nodes"]} == set(api)
    by_id = {node["id"]: node for node in ui["nodes"]}
    for link_id, source, slot, target, target_slot, kind in ui["links"]:
        socket = by_id[target]["inputs"][target_slot]
        assert (socket["link"], socket["type"]) == (link_id, kind)
        assert api[str(target)]["inputs"][socket["name"]] == [str(source), slot]
        assert link_id in by_id[source]["outputs"][slot]["links"] and by_id[source]["outputs"][slot]["type"] == kind
    for node in ui["nodes"]:
        inputs = api[str(node["id"])]["inputs"]
        assert api[str(node["id"])]["class_type"] == node["type"]
        assert sum(_is_link(value) for value in inputs.values()) == len(node["inputs"])
        widgets = []
        for key, value in inputs.items():
            if not _is_link(value):
                widgets.append(value)
                if key in FRONTEND_EXTRAS:
                    widgets.append(FRONTEND_EXTRAS[key])
        assert node["widgets_values"] == widgets, node["type"]


@pytest.mark.parametrize("name", WORKFLOWS)
def test_our_nodes_get_every_input_and_each_sampler_depth_on_both_sides(comfyui, depth_checkpoint_in_comfyui, name):
    for file in FILES:
        (comfyui.base / "input" / file).write_bytes(b"")
    _, api = _load(name)
    for node in api.values():
        if node["class_type"] in comfyui.nodes.NODE_CLASS_MAPPINGS:
            required = comfyui.nodes.NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()["required"]
            assert list(node["inputs"]) == list(required), node["class_type"]
            for key, value in node["inputs"].items():
                if isinstance(required[key][0], list):
                    assert value in required[key][0], (node["class_type"], key, value)
        for key in ("ckpt_name",):
            if key in node["inputs"]:
                assert node["inputs"][key] == CHECKPOINT
        if node["class_type"] in ("LoadImage", "Depth2ImgLoadDepthMap"):
            assert node["inputs"]["image"] in FILES
    samplers = [node for node in api.values() if node["class_type"] == "KSampler"]
    depths = set()
    for sampler in samplers:
        (positive, slot_p), (negative, slot_n) = sampler["inputs"]["positive"], sampler["inputs"]["negative"]
        assert positive == negative and (slot_p, slot_n) == (0, 1)
        conditioning = api[positive]
        assert conditioning["class_type"] == "Depth2ImgConditioning"
        assert conditioning["inputs"]["latent"] == sampler["inputs"]["latent_image"]  # the size it samples at
        depths.add(tuple(conditioning["inputs"]["depth"]))
    assert len(depths) == 1  # one depth for every pass: the second pass never estimates the first's picture again
    if name == "upscale_second_pass":
        second = next(s for s in samplers if api[s["inputs"]["latent_image"][0]]["class_type"] == "LatentUpscale")
        assert api[second["inputs"]["latent_image"][0]]["inputs"]["samples"][0] in {
            key for key, node in api.items() if node["class_type"] == "KSampler"}
        assert second["inputs"]["denoise"] < 1
