"""Time and peak memory of converting a full-size SD2 depth model, printed as JSON.

``python tests/benchmark_conversion.py [--float32] [--keep DIR]``: writes a diffusers folder with
random weights (float16 by default), converts it to a checkpoint and back, each in its own process.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from diffusers_folder import WEIGHTS_FILES, run_convert, write_depth_pipeline  # noqa: E402


def timed_convert(*args: Path | str) -> dict:
    start = time.perf_counter()
    run, peak = run_convert(*args)
    if peak is None:
        raise SystemExit(run.stderr)
    return {"seconds": round(time.perf_counter() - start, 1), "peak_rss_mib": round(peak / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--float32", action="store_true")
    parser.add_argument("--keep", type=Path, help="work here and keep the files")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        folder = write_depth_pipeline(work / "diffusers", torch.float32 if args.float32 else torch.float16)
        size = sum((folder / name / file).stat().st_size for name, file in WEIGHTS_FILES.items())
        checkpoint = work / "checkpoint" / "depth.safetensors"
        to_checkpoint = timed_convert(folder, checkpoint)
        to_diffusers = timed_convert(checkpoint, work / "back", "--to", "diffusers")
    print(json.dumps({"model_gib": round(size / 2**30, 2), "dtype": "float32" if args.float32 else "float16",
                      "to_checkpoint": to_checkpoint, "to_diffusers": to_diffusers,
                      "peak_over_model_size": round(max(to_checkpoint["peak_rss_mib"],
                                                        to_diffusers["peak_rss_mib"]) * 2**20 / size, 3),
                      "torch": torch.__version__}, indent=1))


if __name__ == "__main__":
    main()
