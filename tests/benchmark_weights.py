"""Reading a full-size SD2 depth ``.ckpt``: inspection and the depth slice, against torch's own loader. JSON out.

``python tests/benchmark_weights.py [--legacy]``: writes a Lightning-style ``512-depth-ema.ckpt`` in the exact
layout of the public file (float16 random data, ``state_dict()``-style OrderedDict), then measures each reader
in its own process: wall time and peak resident memory (VmHWM).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(Path(__file__).parent))

from reference import load_reference  # noqa: E402

READERS = {  # what is timed; imports are done before the clock starts
    "ours: inspect (read_tensor_index)": "n = len(read_tensor_index(PATH))",
    "ours: depth slice (estimator_state_from_file)": "n = len(estimator_state_from_file(PATH))",
    "torch.load(weights_only=True, mmap=True), then the slice":
        "s = torch.load(PATH, weights_only=True, mmap=True)['state_dict']; "
        "n = len({k: v.clone() for k, v in s.items() if k.startswith('depth_model.model.')})",
    "torch.load(weights_only=False), then the slice":
        "s = torch.load(PATH, weights_only=False)['state_dict']; "
        "n = len({k: v for k, v in s.items() if k.startswith('depth_model.model.')})",
}
_MEASURE = """
import sys, time
import torch
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.weights import estimator_state_from_file
PATH = sys.argv[1]
start = time.perf_counter()
{code}
seconds = time.perf_counter() - start
peak = next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM'))
print(seconds, peak * 1024, n)
"""


def _write_checkpoint(path: Path, legacy: bool) -> int:
    generator = torch.Generator().manual_seed(0)
    state = collections.OrderedDict()
    for key, (shape, _) in load_reference("sd2-depth-512-depth-ema.json")["tensors"].items():
        state[key] = torch.randn(shape, generator=generator).half()
    state._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save({"epoch": 6, "global_step": 200000, "pytorch-lightning_version": "1.5.0", "state_dict": state,
                "callbacks": {"ModelCheckpoint": {"best_model_score": None}}}, path,
               _use_new_zipfile_serialization=not legacy)
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--legacy", action="store_true", help="the legacy (pre-1.6) layout instead of zip")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "512-depth-ema.ckpt"
        size = _write_checkpoint(path, args.legacy)
        for name, code in READERS.items():
            if args.legacy and "mmap=True" in code:
                continue  # torch memory-maps zip files only
            start = time.perf_counter()
            run = subprocess.run([sys.executable, "-c", _MEASURE.format(code=code), str(path)], cwd=ROOT,
                                 capture_output=True, text=True, timeout=1800)
            if run.returncode != 0:
                results[name] = {"error": run.stderr.strip().splitlines()[-1]}
                continue
            seconds, peak, count = run.stdout.split()
            results[name] = {"seconds": round(float(seconds), 3), "peak_rss_mib": round(int(peak) / 2**20),
                             "tensors": int(count), "process_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps({"file_gib": round(size / 2**30, 2), "layout": "legacy" if args.legacy else "zip",
                      "dtype": "float16", "torch": torch.__version__, "readers": results}, indent=1))


if __name__ == "__main__":
    main()
