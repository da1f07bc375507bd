"""Says what the 9-channel error of a depth checkpoint means, where ComfyUI prints it.

Without depth conditioning ComfyUI feeds an SD2 depth checkpoint (a UNet with 5 input channels, which it
takes for an inpainting model) a mask and a masked picture: the first step fails with "expected input[2, 9,
64, 64] to have 5 channels, but got 9 channels instead", which names no cause. ComfyUI has no hook where a
pack sees a model load or a sampler start without changing ComfyUI's code for every workflow, so this only
listens: a filter on the root logger, through which ComfyUI logs "!!! Exception during processing !!!",
adds the cause and the fix to that one line. Nothing else is changed or hidden.
"""

from __future__ import annotations

import logging
import re

# torch's conv2d message for a 5-channel first layer given 4 latent + 5 inpainting channels
_DEPTH_MODEL_WITHOUT_DEPTH = re.compile(r"expected input\[\d+, 9, .*\] to have 5 channels, but got 9 channels")
NOTE = ("[depth2img] This is an SD2 depth checkpoint (such as 512-depth-ema) sampled without depth conditioning: "
        "ComfyUI took its 5-channel UNet for an inpainting model. Put a 'Depth conditioning' node (category "
        "'depth2img (SD2 depth)') between the prompts and the KSampler, on both positive and negative, fed by "
        "'Depth estimate' or 'Load depth map'.")


class DepthModelErrorNote(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        # the error's own line, not the traceback ComfyUI logs after it
        if record.levelno >= logging.ERROR and _DEPTH_MODEL_WITHOUT_DEPTH.search(message) \
                and not message.startswith("Traceback"):
            record.msg = f"{message}\n{NOTE}"
        return True


def install() -> None:
    root = logging.getLogger()
    if not any(isinstance(existing, DepthModelErrorNote) for existing in root.filters):
        root.addFilter(DepthModelErrorNote())
