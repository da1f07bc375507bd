"""ldm's MiDaS loader as the WebUI leaves it: load_model_inner is ldm's, load_model downloads a missing file."""

import os

import torch

ISL_PATHS = {"dpt_hybrid": "models/midas/dpt_hybrid-midas-501f0c75.pt"}
calls = []


def load_model_inner(model_type):
    from lib_depth2img.estimators import create_estimator

    calls.append(("build", ISL_PATHS[model_type]))
    return create_estimator(model_type), None


def load_model(model_type):
    path = ISL_PATHS[model_type]
    if not os.path.exists(path):
        calls.append(("download", path))
        raise OSError("no network: could not download the MiDaS weights")
    return load_model_inner(model_type)


class MiDaSInference(torch.nn.Module):
    """The depth model's ``depth_model``: asks load_model for its network when built (no checkpoint read)."""

    def __init__(self, model_type):
        super().__init__()
        self.model, _ = load_model(model_type)

    def forward(self, x):
        return self.model(x).unsqueeze(1)
