"""Time per img2img generation with this extension's depth path versus the WebUI's native one.

``DEPTH2IMG_WEBUI_DIR=/path/to/webui python tests/webui/benchmark_webui.py [--repeats N] [--size S]``
starts a real WebUI (see webui_server.py), runs the same picture with the same seed through both
paths, interleaved, and prints JSON. Both paths run one MiDaS forward; the difference is what the
extension adds (or saves).
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
            "repeats": args.repeats, "extension_median_s": round(ours, 3), "native_median_s": round(native, 3),
            "extension_added_s": round(ours - native, 3),
            "all_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        }, indent=2))


if __name__ == "__main__":
    main()
