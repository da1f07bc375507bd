"""The suite's own health, as a pytest plugin (tests/conftest.py loads it): each test file's peak memory is
printed at the end of a run, so anyone can check the rule that no test process passes 3 GB; a test that kills
its worker (the kernel's out-of-memory killer) fails once instead of killing the workers that replace it; and
the temp folders a crash leaves behind are removed, since a crash skips the fixtures' clean-up of gigabyte
weights files."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import os
import resource
import shutil

import pytest

LIMIT_MIB = 3 * 1024
SHARED_FOLDER = "shared"  # in the run's own folder: the full-size files written once for all workers
# opt-in suites whose subprocess is a real host (WebUI, Forge, ComfyUI): its memory is the host's, not a test's
REAL_HOST_SUITES = ("tests/webui/", "tests/comfyui/")
_KEY = "depth2img_peak_mib"  # how a worker hands its figures to the controller (config.workeroutput)
_peaks: dict[str, list] = {}  # test file -> [this process's peak MiB, its largest subprocess's MiB or None]
_current: dict = {"file": None, "children": 0.0}
_crashed: list[str] = []


def _peak_mib() -> float:
    """This process's peak resident memory: VmHWM, which _reset_peak can lower; ru_maxrss where there is none."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def give_back_freed_memory() -> None:
    """Between test files: what an earlier file freed goes back to the system. glibc keeps freed blocks under
    its mmap threshold (up to 32 MiB: most tensors of a model) for reuse, so a worker that built a full-size
    model once stayed gigabytes large for every later file it ran."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError, TypeError):  # not glibc (macOS, musl): nothing to trim
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def _reset_peak() -> None:
    """Lowers VmHWM to what is resident now (Linux 4.0+), so a file's peak is not an earlier file's."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # the peak then counts from the process's start: an upper bound


def _children_mib() -> float:
    """The largest finished subprocess's peak. getrusage cannot be reset, and a child's figure starts at what
    its parent held when it was spawned (fork and vfork share the parent's pages until exec): so it says
    something about the subprocesses only where it rises above the parent's own peak."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Runs only where the test runs (a worker, or the one process with -n 0); module and session fixtures
    are torn down inside the last test's protocol, so they count for its file."""
    file = item.nodeid.split("::")[0]
    if file != _current["file"]:
        give_back_freed_memory()
        _reset_peak()
        _current.update(file=file, children=_children_mib())
    try:
        return (yield)
    finally:
        peaks = _peaks.setdefault(file, [0.0, None])
        peaks[0] = max(peaks[0], _peak_mib())
        if _children_mib() > max(_current["children"], peaks[0]):
            peaks[1] = _children_mib()


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[_KEY] = _peaks
        return
    basetemp = session.config._tmp_path_factory.getbasetemp()
    shutil.rmtree(basetemp / SHARED_FOLDER, ignore_errors=True)
    for worker in _crashed:  # a dead worker's folder holds whatever its fixtures had not removed yet
        shutil.rmtree(basetemp / f"popen-{worker}", ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    for file, (own, children) in getattr(node, "workeroutput", {}).get(_KEY, {}).items():
        known = _peaks.setdefault(file, [0.0, None])  # a file a crash split over two workers: the larger
        known[:] = [max(known[0], own), max(known[1] or 0, children or 0) or None]
    if error:
        _crashed.append(node.gateway.id)


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem, report, sched):
    """pytest-xdist's loadfile queues a crashed worker's file again with the test that was running still
    pending, so each replacement worker runs it again and dies too, up to four per core, and the run ends
    without running the rest. Marked done, the test is reported failed once and the rest of its file runs."""
    queued = getattr(sched, "workqueue", {})
    units = list(queued.values()) + [u for w in getattr(sched, "assigned_work", {}).values() for u in w.values()]
    for unit in units:
        if crashitem in unit:
            unit[crashitem] = True
    for scope in [scope for scope, unit in queued.items() if all(unit.values())]:
        del queued[scope]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pytest_configure(config):
    """A run that was killed outright keeps its lock, and pytest keeps a locked folder for three days: one whose
    process is gone is removed before the run starts (not with --basetemp, whose folder is the user's)."""
    if hasattr(config, "workerinput") or config.option.basetemp or not hasattr(config, "_tmp_path_factory"):
        return
    own = config._tmp_path_factory.getbasetemp()
    for folder in own.parent.glob("pytest-*"):
        try:
            pid = int((folder / ".lock").read_text())
        except (OSError, ValueError):
            continue
        if folder != own and not _alive(pid):
            shutil.rmtree(folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    if hasattr(terminalreporter.config, "workerinput") or not _peaks:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep("-", f"peak memory per test file, MiB (the rule: no process above {LIMIT_MIB})")
    write(f"{'process':>8} {'subproc':>8}  file  (a subprocess shows where it passed its parent)")
    for file, (own, children) in sorted(_peaks.items(), key=lambda kv: -max(kv[1][0], kv[1][1] or 0)):
        over = "  OVER THE LIMIT" if max(own, children or 0) > LIMIT_MIB else ""
        if own <= LIMIT_MIB and over and file.replace(os.sep, "/").startswith(REAL_HOST_SUITES):
            over = "  (subproc: the real host itself)"
        write(f"{own:8.0f} {f'{children:.0f}' if children else '-':>8}  {file}{over}")
    for worker in _crashed:
        write(f"worker {worker} crashed: its file's peak is not known; its temp folder was removed")
