"""Time of the 'Depth estimate' node in a real ComfyUI on CPU, and what a repeated picture costs (prints figures).

    DEPTH2IMG_COMFYUI_DIR=/path/to/ComfyUI python tests/comfyui/benchmark_comfyui.py [--size 512]

Each prompt is LoadImage -> Depth2ImgEstimate -> PreviewImage; its time is ComfyUI's own, from the
execution_start and execution_success timestamps in /history. Three prompts: picture A (estimator load and a
forward), picture B (a forward), picture A again with another gamma (the node runs, the depth cache should
answer: no forward). Then the core's own estimate of A in this process, with the checkpoint's weights, as the
reference (the WebUI's figure for the same picture comes from tests/webui/benchmark_webui.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent), str(HERE.parent.parent)]

import numpy as np  # noqa: E402
from comfyui_server import CHECKPOINT, comfyui_checkpoint, running_comfyui  # noqa: E402
from PIL import Image  # noqa: E402
from reference import synthetic_image  # noqa: E402


def estimate_prompt(picture: str, gamma: float) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": picture}},
        "2": {"class_type": "Depth2ImgEstimate", "inputs": {"image": ["1", 0], "estimator": "checkpoint",
                                                            "ckpt_name": CHECKPOINT, "invert": False, "near": 1.0,
                                                            "far": 0.0, "gamma": gamma, "blur": 0.0}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def timed(comfyui, prompt: dict) -> tuple[float, list]:
    entry = comfyui.wait(comfyui.queue(prompt))
    assert entry["status"]["status_str"] == "success", entry["status"]
    messages = dict((name, data) for name, data in entry["status"]["messages"])
    seconds = (messages["execution_success"]["timestamp"] - messages["execution_start"]["timestamp"]) / 1000
    return seconds, messages.get("execution_cached", {}).get("nodes", [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="the pictures' side in pixels")
    args = parser.parse_args()
    comfyui_dir = os.environ["DEPTH2IMG_COMFYUI_DIR"]
    checkpoint = comfyui_checkpoint(comfyui_dir)
    pack = Path(os.environ.get("DEPTH2IMG_COMFYUI_PACK") or HERE.parent.parent).resolve()
    picture = (synthetic_image(args.size, args.size) * 255).round().astype(np.uint8)
    with tempfile.TemporaryDirectory() as base, running_comfyui(comfyui_dir, Path(base), checkpoint, pack) as comfyui:
        Image.fromarray(picture).save(comfyui.input_dir / "a.png")
        Image.fromarray(np.ascontiguousarray(picture[::-1, ::-1])).save(comfyui.input_dir / "b.png")
        rows = [("picture A, first (estimator load + forward)", *timed(comfyui, estimate_prompt("a.png", 1.0))),
                ("picture B (forward)", *timed(comfyui, estimate_prompt("b.png", 1.0))),
                ("picture A again, gamma 1.5 (depth cache)", *timed(comfyui, estimate_prompt("a.png", 1.5)))]
    for label, seconds, cached in rows:
        print(f"ComfyUI {label}: {seconds * 1000:8.0f} ms (nodes served from ComfyUI's cache: {cached or 'none'})")

    import torch

    from lib_depth2img.estimators import create_estimator
    from lib_depth2img.pipeline import condition_pictures
    from lib_depth2img.weights import load_estimator_from_file

    estimator = load_estimator_from_file(create_estimator("dpt_hybrid"), checkpoint)
    tensor = torch.from_numpy(picture.astype(np.float32) / 255).permute(2, 0, 1)[None]
    condition_pictures(estimator, tensor, (args.size // 8, args.size // 8))  # warm-up
    started = time.perf_counter()
    condition_pictures(estimator, tensor, (args.size // 8, args.size // 8))
    print(f"core in-process forward of picture A ({torch.get_num_threads()} threads): "
          f"{(time.perf_counter() - started) * 1000:8.0f} ms")


if __name__ == "__main__":
    main()
