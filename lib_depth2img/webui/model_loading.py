"""Loading depth checkpoints offline: MiDaS weights come from the checkpoint, not a download.

The WebUI builds ldm's MiDaS from ``models/midas/dpt_hybrid-midas-501f0c75.pt`` and downloads
that 470 MB file when it is absent, although a depth checkpoint carries the same weights and
overwrites them right after. This wraps ``ldm.modules.midas.api.load_model`` once, at start-up,
as the WebUI itself does: with the file present nothing changes; without it the network is
built empty and the checkpoint fills it.
"""

from __future__ import annotations

import os

from torch import nn

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, estimator_from_weights
from lib_depth2img.checkpoint_estimator import holds_checkpoint_weights
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.weights import load_estimator_weights
from lib_depth2img.weights_file import WeightsFile

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
    """After a load: ldm's MiDaS network must hold the checkpoint's depth weights. The original WebUI loads
    them; reForge and Forge Classic never do (they leave it built empty, or from models/midas): there they
    are copied in from the checkpoint file, so the host's own depth path (the extension switched off) and
    ours both take depth from the checkpoint, and no second copy is needed. A checkpoint without depth
    weights, whose network was built without its file, gets a message saying which file goes where."""
    network = getattr(getattr(sd_model, "depth_model", None), "model", None)
    if network is None:
        return
    network.__dict__.pop(MISSING_ATTRIBUTE, None)  # the host reuses the network when switching checkpoints
    checkpoint = sd_model.sd_checkpoint_info.filename
    try:
        opened = WeightsFile(checkpoint)
        name = estimator_from_weights(opened.index)
        if name not in (None, "unknown") and not holds_checkpoint_weights(network, opened):
            _fill_from_checkpoint(network, opened)
    except Depth2ImgError as error:  # the host loaded it, so this is rare; one line, never a traceback
        print(f"Depth-to-image: {error}")
        return
    expected_file = getattr(network, WEIGHTS_FILE_ATTRIBUTE, None)
    if name is None and expected_file is not None:
        message = (f"{os.path.basename(checkpoint)} carries no MiDaS weights and {os.path.basename(expected_file)} "
                   f"is missing: put that file in {os.path.dirname(expected_file)}, then load the checkpoint again.")
        setattr(network, MISSING_ATTRIBUTE, message)
        print(f"Depth-to-image: {message}")


def _fill_from_checkpoint(network: nn.Module, opened: WeightsFile) -> None:
    """Copies the checkpoint's depth weights into the host's network, all or nothing: a network of another
    layout is left as it is (generations then load our estimator from the file instead). Set tensor by tensor
    (``load_estimator_weights``), not through the host's ``load_state_dict``, which it replaces while loading."""
    state = {k[len(DEPTH_WEIGHTS_PREFIX):]: v for k, v in opened.read_prefix(DEPTH_WEIGHTS_PREFIX).items()}
    try:
        load_estimator_weights(network, state, source=f"The depth weights in {opened.path.name}")
    except Depth2ImgError:
        print(f"Depth-to-image: the MiDaS network of this WebUI is laid out unlike the depth weights in "
              f"{opened.path.name}; they are read from the file at each generation instead.")
        return
    print(f"Depth-to-image: the MiDaS network now holds the depth weights of {opened.path.name} "
          "(this WebUI does not load them itself).")
