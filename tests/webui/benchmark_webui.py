"""Time per generation with this extension's depth path versus the WebUI's native one, and txt2img's.

``DEPTH2IMG_WEBUI_DIR=/path/to/webui python tests/webui/benchmark_webui.py [--repeats N] [--size S]``
starts a real WebUI (see webui_server.py) and prints JSON:

- img2img: the same picture with the same seed through both paths, interleaved. Both run one MiDaS
  forward; the difference is what the extension adds (or saves).
- txt2img (no native path to compare with): from a depth map, which needs no estimator forward; from a
  picture never seen, which needs one; and from that picture again, which the depth cache serves.
  The depth endpoint's own ``seconds`` show the estimator's share without the generation around it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
sys.path.insert(0, str(Path(__file__).parent.parent.parent))

from test_real_webui import _b64, _picture  # noqa: E402
from webui_server import running_webui  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    webui_dir = os.environ["DEPTH2IMG_WEBUI_DIR"]
    with tempfile.TemporaryDirectory() as data_dir, running_webui(webui_dir, Path(data_dir)) as webui:
        picture = _b64(_picture(size=args.size))

        def generate(enabled: bool) -> float:
            payload = {"init_images": [picture], "prompt": "a house", "seed": 1, "steps": 2, "width": args.size,
                       "height": args.size, "denoising_strength": 1.0, "sampler_name": "Euler",
                       "alwayson_scripts": {"Depth-to-image": {"args": [enabled]}}}
            start = time.perf_counter()
            response = webui.post("/sdapi/v1/img2img", payload)
            assert response.status_code == 200, response.text
            return time.perf_counter() - start

        generate(True), generate(False)  # warm-up: the first generation pays for lazy set-up
        times = {"extension": [], "native": []}
        for _ in range(args.repeats):
            times["extension"].append(generate(True))
            times["native"].append(generate(False))
        ours, native = statistics.median(times["extension"]), statistics.median(times["native"])
        print(json.dumps({
            "what": f"img2img {args.size}x{args.size}, 2 steps, tiny UNet/VAE, real-size MiDaS DPT-Hybrid, CPU",
            "load_average": os.getloadavg(),
            "repeats": args.repeats, "extension_median_s": round(ours, 3), "native_median_s": round(native, 3),
            "extension_added_s": round(ours - native, 3),
            "all_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
            "txt2img": _txt2img_figures(webui, args),
        }, indent=2))


def _txt2img_figures(webui, args) -> dict:
    import base64

    import cv2
    import numpy as np

    ramp = np.tile(np.linspace(0, 65535, args.size).astype(np.uint16), (args.size, 1))
    depth_map = base64.b64encode(cv2.imencode(".png", ramp)[1].tobytes()).decode()

    def generate(settings: dict) -> float:
        payload = {"prompt": "a house", "seed": 1, "steps": 2, "width": args.size, "height": args.size,
                   "sampler_name": "Euler", "alwayson_scripts": {"Depth-to-image": {"args": [settings]}}}
        start = time.perf_counter()
        response = webui.post("/sdapi/v1/txt2img", payload)
        assert response.status_code == 200, response.text
        return time.perf_counter() - start

    generate({"depth_source": "upload", "depth_map": depth_map})  # warm-up
    times = {"map": [], "picture_first": [], "picture_again": [], "endpoint_first": [], "endpoint_again": []}
    for repeat in range(args.repeats):
        picture = _b64(_picture(flip=repeat % 2 == 1, size=args.size + 8 * (repeat + 1)))  # never seen before
        times["map"].append(generate({"depth_source": "upload", "depth_map": depth_map}))
        times["picture_first"].append(generate({"depth_picture": picture}))
        times["picture_again"].append(generate({"depth_picture": picture}))
        other = _b64(_picture(flip=repeat % 2 == 0, size=args.size + 8 * (repeat + 1)))
        for key in ("endpoint_first", "endpoint_again"):
            body = webui.post("/depth2img/v1/depth", {"image": other}).json()
            assert body["cached"] is (key == "endpoint_again"), body
            times[key].append(body["seconds"])
    return {"what": f"txt2img {args.size}x{args.size}, 2 steps; endpoint: estimation only, without the queue",
            "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
            "all_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()}}


if __name__ == "__main__":
    main()
