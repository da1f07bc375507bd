"""comfy/sampler_helpers.py (a125cd84): a CONDITIONING list becomes the sampler's cond dicts."""

import uuid


def convert_cond(cond):
    out = []
    for tensor, options in cond:
        entry = options.copy()
        entry["model_conds"] = entry.get("model_conds", {})
        if tensor is not None:
            entry["cross_attn"] = tensor
        entry["uuid"] = uuid.uuid4()
        out.append(entry)
    return out
