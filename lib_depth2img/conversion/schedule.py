"""The noise-schedule buffers ldm keeps in a checkpoint (``betas``, ``alphas_cumprod``, ...).

diffusers keeps none: the scheduler computes them from its config. ldm computes them the
same way from the yaml, in float64, and stores float32; so does this.
"""

from __future__ import annotations

import torch


def schedule_buffers(params: dict) -> dict[str, torch.Tensor]:
    """``params``: the yaml's ``model.params`` (linear_start, linear_end, timesteps, beta_schedule)."""
    start, end = params.get("linear_start", 1e-4), params.get("linear_end", 2e-2)
    steps = params.get("timesteps", 1000)
    if params.get("beta_schedule", "linear") == "linear":
        betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    else:  # sqrt_linear
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    alphas = 1.0 - betas
    cumprod = torch.cumprod(alphas, dim=0)
    cumprod_prev = torch.cat([torch.ones(1, dtype=torch.float64), cumprod[:-1]])
    variance = betas * (1.0 - cumprod_prev) / (1.0 - cumprod)
    buffers = {
        "betas": betas, "alphas_cumprod": cumprod, "alphas_cumprod_prev": cumprod_prev,
        "sqrt_alphas_cumprod": cumprod.sqrt(), "sqrt_one_minus_alphas_cumprod": (1.0 - cumprod).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - cumprod).log(), "sqrt_recip_alphas_cumprod": (1.0 / cumprod).sqrt(),
        "sqrt_recipm1_alphas_cumprod": (1.0 / cumprod - 1).sqrt(), "posterior_variance": variance,
        "posterior_log_variance_clipped": variance.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * cumprod_prev.sqrt() / (1.0 - cumprod),
        "posterior_mean_coef2": (1.0 - cumprod_prev) * alphas.sqrt() / (1.0 - cumprod),
    }
    return {name: value.to(torch.float32) for name, value in buffers.items()}
