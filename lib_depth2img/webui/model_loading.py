"""Loading depth checkpoints offline: MiDaS weights come from the checkpoint, not a download.

The WebUI builds ldm's MiDaS from ``models/midas/dpt_hybrid-midas-501f0c75.pt`` and downloads
that 470 MB file when it is absent, although a depth checkpoint carries the same weights and
overwrites them right after. This wraps ``ldm.modules.midas.api.load_model`` once, at start-up,
as the WebUI itself does: with the file present nothing changes; without it the network is
built empty and the checkpoint fills it.
"""

from __future__ import annotations

import os

from lib_depth2img.checkpoint import estimator_from_weights
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.tensor_index import read_tensor_index

WEIGHTS_FILE_ATTRIBUTE = "depth2img_expected_weights_file"
MISSING_ATTRIBUTE = "depth2img_missing_weights"


def install_offline_midas_loader() -> None:
    from ldm.modules.midas import api

    if getattr(api.load_model, "depth2img_offline", False):
        return
    with_download = api.load_model
    without_download = getattr(api, "load_model_inner", with_download)

    def load_model(model_type):
        path = api.ISL_PATHS.get(model_type)
        if path and os.path.exists(path):
            return with_download(model_type)
        api.ISL_PATHS[model_type] = None  # ldm builds the network without reading any file
        try:
            model, transform = without_download(model_type)
        finally:
            api.ISL_PATHS[model_type] = path
        setattr(model, WEIGHTS_FILE_ATTRIBUTE, path)
        return model, transform

    load_model.depth2img_offline = True
    api.load_model = load_model


def check_loaded_depth_weights(sd_model) -> None:
    """After a load: a depth network built without its file must have got weights from the checkpoint."""
    network = getattr(getattr(sd_model, "depth_model", None), "model", None)
    expected_file = getattr(network, WEIGHTS_FILE_ATTRIBUTE, None)
    if network is None or expected_file is None:
        return
    network.__dict__.pop(MISSING_ATTRIBUTE, None)  # the WebUI reuses the network when switching checkpoints
    checkpoint = sd_model.sd_checkpoint_info.filename
    try:
        index = read_tensor_index(checkpoint)
    except Depth2ImgError as error:  # the WebUI loaded it, so this is rare; one line, never a traceback
        print(f"Depth-to-image: {error}")
        return
    if estimator_from_weights(index) is None:
        message = (f"{os.path.basename(checkpoint)} carries no MiDaS weights and {os.path.basename(expected_file)} "
                   f"is missing: put that file in {os.path.dirname(expected_file)}, then load the checkpoint again.")
        setattr(network, MISSING_ATTRIBUTE, message)
        print(f"Depth-to-image: {message}")
