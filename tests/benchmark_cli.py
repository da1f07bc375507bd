"""Pictures per second of ``depth2img depth FOLDER``: one at a time against the defaults, printed as JSON.

``python tests/benchmark_cli.py [--estimator dpt_hybrid|midas_v21_small] [--weights FILE] [--device cpu|cuda]
[--pictures 16] [--repeats 2] [--batch-size N] [--keep DIR]``

Writes the estimator's release file (the tests' rule-set weights, full size; or takes ``--weights``) and a
folder of photo-like JPEGs of 1 to 12 MP, most 4:3 landscape, some portrait and 16:9, with grain, so that
they cost what a camera's do to decode. Then runs the CLI on the folder in fresh processes, one way after
the other ``--repeats`` times: ``--batch-size 1 --no-read-ahead`` (each picture read, estimated and written
before the next) and the defaults (read ahead in a background thread, batched by shape). A run's speed is
its maps over the seconds from the model's loading (the CLI's "NAME on DEVICE" line) to the process's end.

Also printed: where one picture's time goes (reading and preparing, the forward alone and in a batch, the
resize back and the PNG), measured in this process, and the largest difference between the two runs' maps.
On a shared machine, read the load average printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))

from reference import reference_layout, rule_weights  # noqa: E402

from lib_depth2img.cli import DEFAULT_BATCH_SIZE  # noqa: E402

# (width, height): 12, 8, 3 and 1 MP at 4:3, 12 MP upright, 2 MP at 16:9; cycled through for the folder
SIZES = [(4000, 3000), (4000, 3000), (3264, 2448), (2000, 1500), (3000, 4000), (1152, 864), (1920, 1080),
         (4000, 3000), (3264, 2448), (2000, 1500), (3000, 4000), (1152, 864), (4000, 3000), (3264, 2448),
         (1920, 1080), (2000, 1500)]
ONE_AT_A_TIME = ["--batch-size", "1", "--no-read-ahead"]


def write_weights(name: str, path: Path) -> Path:
    """The release file, as its authors saved it (``torch.save(module.state_dict())``), with rule-set weights."""
    from lib_depth2img.estimators import create_estimator

    if name == "dpt_hybrid":
        state = rule_weights(reference_layout("midas-dpt_hybrid.json"))
    else:
        layout = {k: tuple(v.shape) for k, v in create_estimator(name, device="meta").state_dict().items()}
        state = rule_weights(layout)
        for key in [k for k in state if k.endswith("running_var")]:
            state[key] = state[key].abs() + 0.5
    torch.save(state, path)
    return path


def write_photo(path: Path, width: int, height: int, seed: int) -> None:
    """Light, shapes at a few scales and grain: a JPEG about as large (2-6 MB at 12 MP) and as slow to decode as
    a camera's."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    tint = rng.uniform(0.3, 1.0, 3).astype(np.float32)
    pixels = (90 + 120 * (1 - y) * tint + 40 * np.sin(2 * np.pi * (x * rng.uniform(2, 6) + y * rng.uniform(1, 4))))
    for cells in (8, 40, 200):  # blotches from coarse to fine, as in a photo's texture
        coarse = Image.fromarray(rng.uniform(0, 255, (cells * height // width + 1, cells, 3)).astype(np.uint8))
        pixels = pixels + (np.asarray(coarse.resize((width, height), Image.BICUBIC), np.float32) - 128) * 0.25
    pixels += rng.normal(0, 6, (height, width, 1)).astype(np.float32)  # sensor grain
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


def write_folder(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    pictures = []
    for number in range(count):
        path = folder / f"IMG_{number:04}.jpg"
        if not path.exists():
            write_photo(path, *SIZES[number % len(SIZES)], seed=number)
        pictures.append(path)
    return pictures


def run_cli(folder: Path, weights: Path, out: Path, device: str, options: list[str]) -> dict:
    """One fresh process: its maps per second from the model's loading to its end, its whole time, its peak
    memory and CPU time."""
    command = [sys.executable, "-m", "lib_depth2img", "depth", str(folder), "--weights", str(weights), "-o", str(out),
               "--overwrite", "--device", device, *options]
    start = time.perf_counter()
    with open(out.parent / f"{out.name}.stdout", "w") as stdout:
        process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True)
        loaded, said = None, []
        for line in process.stderr:  # tqdm's \r redraws count as lines
            said.append(line)
            if loaded is None and " picture(s)" in line:
                loaded = time.perf_counter()
        _, status, usage = os.wait4(process.pid, 0)  # its own peak memory, not that of all children so far
        process.returncode = os.waitstatus_to_exitcode(status)
    end = time.perf_counter()
    if process.returncode != 0 or loaded is None:
        raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{''.join(said[-20:])}")
    maps = len((out.parent / f"{out.name}.stdout").read_text().split())
    return {"maps": maps, "seconds": round(end - loaded, 2), "whole_process_seconds": round(end - start, 2),
            "pictures_per_second": round(maps / (end - loaded), 4), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            # the work done, which other people's load on the machine changes less than the seconds
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


def map_difference(first: Path, second: Path) -> int:
    """The largest difference, in levels, between the maps of one name in two folders."""
    largest = 0
    for path in sorted(first.glob("*-depth.png")):
        with Image.open(path) as one, Image.open(second / path.name) as other:
            largest = max(largest, int(np.abs(np.asarray(one, np.int32) - np.asarray(other, np.int32)).max()))
    return largest


def time_split(weights: Path, pictures: list[Path], device: str, batch_size: int) -> dict:
    """Seconds per picture of each step, in this process, on ``batch_size`` pictures of one shape."""
    from lib_depth2img.cli_depth import detect_weights
    from lib_depth2img.depth import predict_depth, resize_depth
    from lib_depth2img.depth_image import save_depth_png
    from lib_depth2img.estimators import create_estimator
    from lib_depth2img.picture_files import read_picture
    from lib_depth2img.transforms import prepare_estimator_input
    from lib_depth2img.weights import load_estimator_from_file

    estimator = load_estimator_from_file(create_estimator(detect_weights(weights, None), device="meta"), weights)
    estimator.to(device)
    spec = estimator.input_spec
    same = [p for p in pictures if _size(p) == _size(pictures[0])][:batch_size]
    start = time.perf_counter()
    prepared = [(prepare_estimator_input(picture, spec), size) for picture, size in map(read_picture, same)]
    read = (time.perf_counter() - start) / len(same)
    predict_depth(estimator, prepared[0][0])  # the first forward sets up kernels
    start = time.perf_counter()
    alone = [predict_depth(estimator, x) for x, _ in prepared]
    forward_alone = (time.perf_counter() - start) / len(same)
    start = time.perf_counter()
    predict_depth(estimator, torch.cat([x for x, _ in prepared]))
    forward_batched = (time.perf_counter() - start) / len(same)
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        for prediction, (_, size) in zip(alone, prepared, strict=True):
            save_depth_png(resize_depth(prediction, size, spec), Path(scratch) / "map.png")
        write = (time.perf_counter() - start) / len(same)
    return {"pictures": len(same), "size": "x".join(map(str, _size(same[0]))),
            "read_and_prepare": round(read, 3), "forward_alone": round(forward_alone, 3),
            f"forward_in_a_batch_of_{len(same)}": round(forward_batched, 3), "resize_back_and_png": round(write, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--estimator", default="dpt_hybrid", choices=("dpt_hybrid", "midas_v21_small"),
                        help="whose rule-set weights to write (without --weights)")
    parser.add_argument("--weights", type=Path, help="an estimator's file to use instead")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--pictures", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, help=f"for the new way; default: the CLI's ({DEFAULT_BATCH_SIZE})")
    parser.add_argument("--keep", type=Path, help="work here and keep the files (the pictures are reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        weights = args.weights
        if weights is None:
            weights = work / f"{args.estimator}-rule.pt"
            if not weights.exists():
                write_weights(args.estimator, weights)
        print(f"writing {args.pictures} pictures in {work / 'photos'}", file=sys.stderr, flush=True)
        pictures = write_folder(work / "photos", args.pictures)
        new_way = [] if args.batch_size is None else ["--batch-size", str(args.batch_size)]
        runs = {"one_at_a_time": [], "defaults": []}
        for repeat in range(args.repeats):  # alternated, so that a change in the machine's load hits both
            for name, options in (("one_at_a_time", ONE_AT_A_TIME), ("defaults", new_way)):
                print(f"run {repeat + 1}/{args.repeats}: {name}", file=sys.stderr, flush=True)
                runs[name].append({**run_cli(work / "photos", weights, work / name, args.device, options),
                                   "load_average": round(os.getloadavg()[0], 2)})
        print("timing the steps of one picture", file=sys.stderr, flush=True)
        split = time_split(weights, pictures, args.device, args.batch_size or DEFAULT_BATCH_SIZE)
        difference = map_difference(work / "one_at_a_time", work / "defaults")
    rates = {name: [run["pictures_per_second"] for run in done] for name, done in runs.items()}
    print(json.dumps({
        "estimator": args.estimator if args.weights is None else str(args.weights), "device": args.device,
        "pictures": args.pictures, "megapixels": round(sum(w * h for w, h in map(_size, pictures)) / 1e6, 1),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "runs": runs,
        "pictures_per_second": {name: {"best": max(r), "median": statistics.median(r)} for name, r in rates.items()},
        "speed_up": {"best": round(max(rates["defaults"]) / max(rates["one_at_a_time"]), 3),
                     "median": round(statistics.median(rates["defaults"]) / statistics.median(rates["one_at_a_time"]),
                                     3)},
        "seconds_per_picture": split,
        "largest_map_difference_in_levels_of_255": difference,
    }, indent=1))


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


if __name__ == "__main__":
    main()
