"""The memory one piece of work takes on its own: run it in a fresh process and measure how far its peak
resident memory rises above what the process held just before (Linux; for the benchmarks)."""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r"""
import json, sys, time
sys.path[:0] = json.loads(sys.argv[1])
{setup}


def _status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024


try:  # reset the peak to what is resident now (Linux 4.0+), so the imports' own peak does not count
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    _method = "VmHWM after clear_refs 5, minus VmRSS before"
except OSError:
    _method = "VmHWM minus VmRSS before (the imports' own peak may hide part of the rise)"
_before = _status("VmRSS:")
_start = time.perf_counter()
{measured}
_seconds = time.perf_counter() - _start
print(json.dumps({{"peak_rise_mib": round((_status("VmHWM:") - _before) / 2**20, 1),
                  "resident_rise_mib": round((_status("VmRSS:") - _before) / 2**20, 1),
                  "seconds": round(_seconds, 3), "method": _method, **globals().get("extra", {{}})}}))
"""


def peak_rise(setup: str, measured: str, paths: list[str], timeout: float = 3600) -> dict:
    """Runs ``setup`` (imports, inputs), then ``measured`` in a fresh python; returns its peak rise in MiB,
    its seconds, and whatever ``measured`` leaves in a dict called ``extra``; or ``{"error": ...}``."""
    code = _CHILD.format(setup=setup, measured=measured)
    run = subprocess.run([sys.executable, "-c", code, json.dumps(paths)], capture_output=True, text=True,
                         timeout=timeout)
    if run.returncode != 0:
        return {"error": (run.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(run.stdout.strip().splitlines()[-1])
