"""Our MiDaS DPT estimators against ldm's (the network the WebUI runs), on a shared machine. JSON out.

``DEPTH2IMG_WEBUI_DIR=/path/to/webui /path/to/webui/venv/bin/python tests/benchmark_reference.py``
(``--estimators``, ``--repeats``, ``--threads``, ``--no-memory``; ``--help`` for all). ldm comes from the
WebUI's ``repositories/stable-diffusion-stability-ai``; where it cannot be imported, only our figures
are printed.

Honest on a busy machine:
- reference and ours alternate run by run in one process, the order swapped every round, so a
  burst of load from elsewhere falls on both; the minimum and the median of each are printed, and
  the load average before and after each setting;
- both networks hold the same rule-set weights and run in the same mode (inference, same threads);
  the largest difference of their outputs is printed beside the times;
- memory is each estimator's own: build, load and one forward in a fresh process, from the same
  release file, measured as the rise of peak resident memory over what the process held before.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

TESTS = Path(__file__).parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT))

from peak_memory import peak_rise  # noqa: E402
from reference import reference_layout, rule_weights  # noqa: E402

from lib_depth2img.estimators import create_estimator  # noqa: E402
from lib_depth2img.weights import load_estimator_weights  # noqa: E402

LDM_BACKBONES = {"dpt_hybrid": "vitb_rn50_384", "dpt_large": "vitl16_384"}
LDM_RELATIVE = Path("repositories") / "stable-diffusion-stability-ai"
# Ratios of our median time (or peak memory) to the reference's that issue 13 asks for.
TARGETS = {("float32", 1): 0.9, ("float32", 4): 0.85, ("bfloat16", 1): 1.0, "memory": 0.85}


def ldm_path(webui: str | None) -> str | None:
    for folder in (webui, os.environ.get("DEPTH2IMG_WEBUI_DIR")):
        if folder and (Path(folder) / LDM_RELATIVE / "ldm").is_dir():
            return str(Path(folder) / LDM_RELATIVE)
    return None


def import_reference(path: str | None):
    """ldm's ``DPTDepthModel`` class, or the reason it cannot be had."""
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from ldm.modules.midas.midas.dpt_depth import DPTDepthModel
    except Exception as error:  # no ldm, no timm, a timm it does not run with
        return None, f"{type(error).__name__}: {error}"
    return DPTDepthModel, None


def build_reference(model_class, name: str, state: dict) -> torch.nn.Module:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm's note on the renamed vit_base_resnet50_384
        model = model_class(path=None, backbone=LDM_BACKBONES[name], non_negative=True)
    model.load_state_dict(state)
    return model.eval()


def build_ours(name: str, state: dict) -> torch.nn.Module:
    estimator = create_estimator(name, device="meta")
    load_estimator_weights(estimator, dict(state))
    return estimator


def _load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def _summary(runs: list[tuple[float, float]]) -> dict:
    wall, cpu = [w for w, _ in runs], [c for _, c in runs]
    return {"min_s": round(min(wall), 4), "median_s": round(statistics.median(wall), 4),
            "cpu_min_s": round(min(cpu), 4), "cpu_median_s": round(statistics.median(cpu), 4),
            "runs_s": [round(w, 4) for w in wall]}


def _cuda_forward_peak(model: torch.nn.Module, x: torch.Tensor) -> float:
    """How far one forward raises the GPU memory allocated above what the weights and input hold."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    with torch.inference_mode():
        model(x)
    torch.cuda.synchronize()
    return round((torch.cuda.max_memory_allocated() - before) / 2**20, 1)


def alternate(runners: dict, repeats: int, sync) -> dict[str, list[tuple[float, float]]]:
    """(wall, process CPU) seconds of each runner once per round, the order reversed every other round;
    two untimed rounds first. CPU time counts this process's threads only, so it moves less than the
    wall clock when others load the machine (threads that spin-wait still count)."""
    names = list(runners)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    with torch.inference_mode():
        for _ in range(2):
            for name in names:
                runners[name]()
        sync()
        for round_index in range(repeats):
            for name in names if round_index % 2 == 0 else names[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                runners[name]()
                sync()
                runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return runs


def timing_rows(name: str, reference_class, settings: list[tuple[str, str, int]], size: int,
                repeats: int) -> list[dict]:
    state = rule_weights(reference_layout(f"midas-{name}.json"))
    models = {"ours": build_ours(name, state)}
    if reference_class is not None:
        models["reference"] = build_reference(reference_class, name, state)
    del state
    rows = []
    for device, dtype_name, batch in settings:
        dtype = getattr(torch, dtype_name)
        for model in models.values():
            model.to(device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(batch)
        x = (torch.rand(batch, 3, size, size, generator=generator) * 2 - 1).to(device=device, dtype=dtype)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        load_before = _load_average()
        times = alternate({label: (lambda m=model, x=x: m(x)) for label, model in models.items()}, repeats, sync)
        row = {"device": device, "dtype": dtype_name, "batch": batch, "input": [size, size],
               "load_average_before": load_before, "load_average_after": _load_average(),
               **{label: _summary(t) for label, t in times.items()}}
        if device == "cuda":
            for label, model in models.items():
                row[label]["forward_peak_mib"] = _cuda_forward_peak(model, x)
        if "reference" in models:
            with torch.inference_mode():
                ours, theirs = models["ours"](x).double(), models["reference"](x).double()
            row["max_difference_relative_to_range"] = float((ours - theirs).abs().max() / (theirs.max() - theirs.min()))
            ours_row, reference_row = row["ours"], row["reference"]
            ratio = ours_row["median_s"] / reference_row["median_s"]
            row["ratio_median"] = round(ratio, 3)
            row["ratio_min"] = round(ours_row["min_s"] / reference_row["min_s"], 3)
            row["ratio_cpu_median"] = round(ours_row["cpu_median_s"] / reference_row["cpu_median_s"], 3)
            target = TARGETS.get((dtype_name, batch)) if device == "cpu" else None
            if target is not None:
                row["target_ratio"], row["target_met"] = target, ratio <= target
        rows.append(row)
        print(f"{name} {device} {dtype_name} batch {batch}: "
              + ", ".join(f"{label} min {row[label]['min_s']:.3f} s median {row[label]['median_s']:.3f} s"
                          for label in models)
              + (f", ratio {row['ratio_median']} (min {row['ratio_min']}, cpu {row['ratio_cpu_median']})"
                 if "ratio_median" in row else "")
              + f"; load {load_before} -> {row['load_average_after']}", file=sys.stderr, flush=True)
    return rows


_SETUP = """
import torch
torch.set_num_threads({threads})
x = torch.rand(1, 3, {size}, {size}) * 2 - 1
{imports}
"""
_IMPORTS = {
    "reference": "import warnings; warnings.simplefilter('ignore')\n"
                 "from ldm.modules.midas.midas.dpt_depth import DPTDepthModel",
    "ours": "from lib_depth2img.estimators import create_estimator\n"
            "from lib_depth2img.weights import load_estimator_from_file",
}
_BUILD = {  # how each builds and loads from a release file: ldm's own path, and ours as the extension does
    "reference": "model = DPTDepthModel(path={path!r}, backbone={backbone!r}, non_negative=True).eval()",
    "ours": "model = load_estimator_from_file(create_estimator({name!r}, device='meta'), {path!r})",
}
_MEASURED = """
{build}
loaded = time.perf_counter()
with torch.inference_mode():
    model(x)
extra = {{"build_and_load_s": round(loaded - _start, 3)}}
"""


def memory_of(kind: str, name: str, weights: Path, size: int, threads: int, paths: list[str]) -> dict:
    """Build, load and one forward of one estimator in a fresh process: the rise of its peak resident memory."""
    setup = _SETUP.format(threads=threads, size=size, imports=_IMPORTS[kind])
    build = _BUILD[kind].format(path=str(weights), name=name, backbone=LDM_BACKBONES[name])
    return peak_rise(setup, _MEASURED.format(build=build), paths)


def memory_rows(name: str, with_reference: bool, size: int, threads: int, repeats: int, paths: list[str],
                scratch: Path) -> dict:
    """Peak memory of build + load + one forward (float32, batch 1), each kind in its own processes, alternating."""
    state = rule_weights(reference_layout(f"midas-{name}.json"))
    files = {"pt": scratch / f"{name}.pt", "safetensors": scratch / f"{name}.safetensors"}
    torch.save(state, files["pt"])
    try:
        from safetensors.torch import save_file

        save_file(state, str(files["safetensors"]))
    except ImportError:
        del files["safetensors"]
    del state
    kinds = [("ours", files["pt"]), *([("reference", files["pt"])] if with_reference else [])]
    runs: dict[str, list[dict]] = {kind: [] for kind, _ in kinds}
    for round_index in range(repeats):
        for kind, path in kinds if round_index % 2 == 0 else kinds[::-1]:
            runs[kind].append(memory_of(kind, name, path, size, threads, paths))
    if "safetensors" in files:
        runs["ours_from_safetensors"] = [memory_of("ours", name, files["safetensors"], size, threads, paths)
                                         for _ in range(repeats)]
    for path in files.values():
        path.unlink()
    result: dict = {"input": [size, size], "dtype": "float32", "batch": 1, "weights_file": "release-style .pt"}
    for kind, measured in runs.items():
        good = [m for m in measured if "error" not in m]
        if not good:
            result[kind] = measured[0]
            continue
        peaks = [m["peak_rise_mib"] for m in good]
        result[kind] = {"peak_rise_mib_min": min(peaks), "peak_rise_mib_median": statistics.median(peaks),
                        "resident_after_mib_median": statistics.median(m["resident_rise_mib"] for m in good),
                        "build_and_load_s_median": statistics.median(m["build_and_load_s"] for m in good),
                        "method": good[0]["method"]}
    if with_reference and "peak_rise_mib_median" in result.get("reference", {}) \
            and "peak_rise_mib_median" in result.get("ours", {}):
        ratio = result["ours"]["peak_rise_mib_median"] / result["reference"]["peak_rise_mib_median"]
        result["ratio_median"] = round(ratio, 3)
        result["target_ratio"], result["target_met"] = TARGETS["memory"], ratio <= TARGETS["memory"]
    print(f"{name} memory: {json.dumps({k: v for k, v in result.items() if k not in ('input',)})}",
          file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", nargs="+", default=list(LDM_BACKBONES), choices=list(LDM_BACKBONES))
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds per setting (each runs both)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", type=int, default=384, help="input side, a multiple of 32")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4], help="float32 batch sizes")
    parser.add_argument("--bfloat16-batch", type=int, default=1, help="0 leaves bfloat16 out")
    parser.add_argument("--memory-repeats", type=int, default=2, help="0 leaves the memory runs out")
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"], choices=["cpu", "cuda"],
                        help="where to time (cuda only where it is available; memory runs are CPU only)")
    parser.add_argument("--webui", help="WebUI folder holding the ldm sources (default: $DEPTH2IMG_WEBUI_DIR)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ldm = ldm_path(args.webui)
    reference_class, missing = import_reference(ldm)
    settings = []
    if "cpu" in args.devices:
        settings += [("cpu", "float32", batch) for batch in args.batches]
        if args.bfloat16_batch:
            settings.append(("cpu", "bfloat16", args.bfloat16_batch))
    if "cuda" in args.devices and torch.cuda.is_available():
        settings += [("cuda", dtype, batch) for dtype in ("float32", "float16", "bfloat16") for batch in args.batches]
    report: dict = {
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads,
                    "cpus": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
        "reference": {"what": "ldm.modules.midas.midas.dpt_depth.DPTDepthModel", "from": ldm}
        if reference_class is not None else {"missing": missing},
        "load_average_start": _load_average(),
        "estimators": {},
    }
    if reference_class is not None:
        import timm

        report["machine"]["timm"] = timm.__version__
    paths = [str(ROOT), *([ldm] if ldm else [])]
    with tempfile.TemporaryDirectory(prefix="depth2img-benchmark-") as scratch:
        for name in args.estimators:
            entry = {"timing": timing_rows(name, reference_class, settings, args.size, args.repeats)}
            if args.memory_repeats:
                entry["memory"] = memory_rows(name, reference_class is not None, args.size, args.threads,
                                              args.memory_repeats, paths, Path(scratch))
            report["estimators"][name] = entry
    report["load_average_end"] = _load_average()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
