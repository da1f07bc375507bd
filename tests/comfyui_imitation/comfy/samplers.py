"""comfy/samplers.py (a125cd84): each conditioning entry's model conds from the model (``encode_model_conds``,
called by ``process_conds``), and one model call of ``calc_cond_batch``: the entries are cut to the batch and
run together when every model cond of theirs ``can_concat`` (cond and uncond in one UNet batch), else apart.
Areas, masks, timestep ranges, hooks and ControlNets are left out: the pack uses none of them."""

import torch


def encode_model_conds(model_function, conds, noise, device, prompt_type, **kwargs):
    for t in range(len(conds)):
        params = conds[t].copy()
        params["device"] = device
        params["noise"] = noise
        params["width"] = params.get("width", noise.shape[3] * 8)
        params["height"] = params.get("height", noise.shape[2] * 8)
        params["prompt_type"] = params.get("prompt_type", prompt_type)
        for k in kwargs:
            params.setdefault(k, kwargs[k])
        entry = conds[t].copy()
        entry["model_conds"] = {**entry["model_conds"], **model_function(**params)}
        conds[t] = entry
    return conds


def process_conds(model, noise, conds, device, latent_image=None, denoise_mask=None, seed=None):
    for k in conds:
        conds[k] = encode_model_conds(model.extra_conds, conds[k][:], noise, device, k, latent_image=latent_image,
                                      denoise_mask=denoise_mask, seed=seed)
    return conds


def _can_concat(first, other):
    return first.keys() == other.keys() and all(first[k].can_concat(other[k]) for k in first)


def calc_cond_batch(model, conds, x_in, timestep, model_options={}):  # noqa: B006 (ComfyUI's signature)
    """``conds``: one list of cond dicts per prompt kind (positive, negative); the first entry of each is used."""
    to_run = [{k: v.process_cond(batch_size=x_in.shape[0], area=None) for k, v in kind[0]["model_conds"].items()}
              for kind in conds]
    groups = [to_run] if all(_can_concat(to_run[0], other) for other in to_run[1:]) else [[c] for c in to_run]
    out = []
    for group in groups:
        batched = {k: group[0][k].concat([c[k] for c in group[1:]]) for k in group[0]}
        output = model.apply_model(torch.cat([x_in] * len(group)), torch.cat([timestep] * len(group)), **batched)
        out.extend(output.chunk(len(group)))
    return out
