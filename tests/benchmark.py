"""Speed and memory of the core, printed as JSON: ``python tests/benchmark.py [--repeats N]``.

Random weights: timings do not depend on the values. GPU rows appear only where CUDA is present.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import struct
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from peak_memory import peak_rise  # noqa: E402

from lib_depth2img.checkpoint import _cache, inspect_checkpoint  # noqa: E402
from lib_depth2img.conditioning import build_depth_conditioning  # noqa: E402
from lib_depth2img.depth_cache import DepthCache  # noqa: E402
from lib_depth2img.estimators import ESTIMATOR_NAMES, create_estimator  # noqa: E402
from lib_depth2img.pipeline import condition_pictures  # noqa: E402
from lib_depth2img.transforms import DPT_INPUT, prepare_estimator_input  # noqa: E402


def median_seconds(fn, repeats: int, sync=lambda: None) -> float:
    fn()  # warm-up: first calls pay for allocations and kernel selection
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def forward_rows(repeats: int) -> list[dict]:
    estimator = create_estimator("dpt_hybrid")
    rows = []
    setups = [("cpu", torch.float32)]
    if torch.cuda.is_available():
        setups += [("cuda", torch.float32), ("cuda", torch.float16), ("cuda", torch.bfloat16)]
    for device, dtype in setups:
        estimator.to(device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for batch in (1, 4):
            x = torch.randn(batch, 3, 384, 384, device=device, dtype=dtype)

            def forward(x=x):
                with torch.inference_mode():
                    estimator(x)

            seconds = median_seconds(forward, repeats, sync)
            rows.append({"what": "dpt_hybrid forward 384x384", "device": device, "dtype": str(dtype)[6:],
                         "batch": batch, "seconds": round(seconds, 4), "seconds_per_image": round(seconds / batch, 4)})
    return rows


def estimator_rows(repeats: int) -> list[dict]:
    """Each estimator at its own resolution for a 512x768 picture; its memory measured on its own, in a fresh
    process (build + one forward), not the running total of this one."""
    rows = []
    picture = torch.rand(1, 3, 512, 768)
    for name in ESTIMATOR_NAMES:
        estimator = create_estimator(name)
        x = prepare_estimator_input(picture, estimator.input_spec)

        def forward(estimator=estimator, x=x):
            with torch.inference_mode():
                estimator(x)

        seconds = median_seconds(forward, repeats)
        parameters = sum(p.numel() for p in estimator.parameters())
        del estimator
        gc.collect()
        own = peak_rise(f"import torch\ntorch.set_num_threads({torch.get_num_threads()})\n"
                        f"x = torch.rand(1, 3, {x.shape[-2]}, {x.shape[-1]})\n"
                        "from lib_depth2img.estimators import create_estimator",
                        f"estimator = create_estimator({name!r})\n"
                        "with torch.inference_mode():\n    estimator(x)", [str(ROOT)])
        rows.append({"estimator": name, "input": list(x.shape[-2:]), "forward_seconds": round(seconds, 3),
                     "parameters_millions": round(parameters / 1e6, 1),
                     "weights_mib_float32": round(parameters * 4 / 2**20, 1),
                     "own_peak_mib_build_and_forward": own.get("peak_rise_mib", own)})
    return rows


def cache_and_batch_rows(repeats: int) -> dict:
    estimator = create_estimator("dpt_hybrid")
    pictures = torch.rand(4, 3, 512, 512)
    latent = (64, 64)

    def miss():
        condition_pictures(estimator, pictures[:1], latent, cache=DepthCache())

    warm = DepthCache()
    condition_pictures(estimator, pictures[:1], latent, cache=warm)
    return {
        "per_generation_cache_miss_seconds": round(median_seconds(miss, repeats), 3),
        "per_generation_cache_hit_seconds": round(median_seconds(
            lambda: condition_pictures(estimator, pictures[:1], latent, cache=warm), repeats), 5),
        "four_pictures_one_batched_forward_seconds": round(median_seconds(
            lambda: condition_pictures(estimator, pictures, latent), repeats), 3),
        "four_pictures_one_by_one_seconds": round(median_seconds(
            lambda: [condition_pictures(estimator, pictures[i:i + 1], latent) for i in range(4)], repeats), 3),
    }


def inspect_seconds(size_gib: int) -> dict:
    """A sparse multi-GB safetensors file: only its header exists on disk."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.safetensors"
        entries = {f"depth_model.model.t{i}": {"dtype": "F16", "shape": [1024, 1024],
                                               "data_offsets": [i * 2**21, (i + 1) * 2**21]}
                   for i in range(size_gib * 512)}
        header = json.dumps(entries).encode()
        with path.open("wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            f.truncate(8 + len(header) + size_gib * 2**30)
        _cache.clear()
        start = time.perf_counter()
        inspect_checkpoint(path)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        inspect_checkpoint(path)
        cached = time.perf_counter() - start
    return {"what": "inspect_checkpoint sparse .safetensors", "size_gib": size_gib, "tensors": len(entries),
            "seconds_first": round(cold, 5), "seconds_cached": round(cached, 6)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    picture = torch.rand(1, 3, 512, 768)
    depth = torch.rand(4, 1, 384, 576)
    report = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                          "cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}}
    sections = {
        "forward": lambda: forward_rows(args.repeats),
        "transform_512x768_seconds": lambda: round(
            median_seconds(lambda: prepare_estimator_input(picture, DPT_INPUT), args.repeats * 4), 5),
        "conditioning_batch4_384x576_to_64x96_seconds": lambda: round(
            median_seconds(lambda: build_depth_conditioning(depth, (64, 96)), args.repeats * 4), 5),
        "inspect": lambda: inspect_seconds(5),
        "cache_and_batching_dpt_hybrid_512x512": lambda: cache_and_batch_rows(max(1, args.repeats // 2)),
        "estimators_512x768": lambda: estimator_rows(max(1, args.repeats // 2)),
    }
    for name, measure in sections.items():  # minutes in all on a CPU: say what is being measured meanwhile
        print(f"measuring {name}...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        report[name] = measure()
        print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    # ru_maxrss is KiB on Linux: this process's running total, several estimators built one after another
    report["process_peak_resident_memory_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
