"""The ``depth`` command: a depth map beside (or away from) each picture, for a folder of photos.

Everything that can be checked is checked before the estimator loads: the weights, the output
folder, each picture's header. A picture that cannot be read is reported and skipped; nothing
is overwritten unless asked; each map's path is printed as it is written.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX
from lib_depth2img.depth import is_out_of_memory
from lib_depth2img.depth_batches import batches_by_input_size, depths_of_batch
from lib_depth2img.depth_image import save_depth_png
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import create_estimator, describe_unsupported, detect_estimator, where_weights_live
from lib_depth2img.picture_files import PICTURE_SUFFIXES, check_picture, read_picture
from lib_depth2img.read_ahead import read_ahead
from lib_depth2img.transforms import InputSpec, prepare_estimator_input
from lib_depth2img.weights import load_estimator_from_file, open_weights
from lib_depth2img.weights_file import WeightsFile

OUTPUT_SUFFIX = "-depth.png"


@dataclass(frozen=True)
class DepthJob:
    picture: Path
    output: Path
    size: tuple[int, int] | None = None  # (height, width) upright, as its header says


def detect_weights(weights: Path | WeightsFile, chosen: str | None) -> str:
    """The estimator for ``weights``: checked against ``chosen`` when given, recognised from the keys if not."""
    weights = open_weights(weights)
    index = weights.index  # the same message for a bad file, whatever --estimator says
    found = detect_estimator(index, DEPTH_WEIGHTS_PREFIX) or detect_estimator(index)
    if found is None:
        other = describe_unsupported(index)
        what = f"{other} weights, which this tool does not run" if other else "no depth-estimator weights it knows"
        raise Depth2ImgError(f"{weights.path} holds {what}. {where_weights_live()}")
    if chosen is not None and chosen != found:
        raise Depth2ImgError(f"{weights.path} holds {found} weights, not {chosen}: leave out --estimator, or pass "
                             f"--estimator {found}.")
    return found


def _available(name: str) -> bool:
    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return name == "cpu"


def best_device() -> torch.device:
    return torch.device(next(name for name in ("cuda", "mps", "cpu") if _available(name)))


def _device(name: str) -> torch.device:
    if name == "auto":
        return best_device()
    if not _available(name):
        raise Depth2ImgError(f"--device {name} was asked for, but this torch build has no {name} device.")
    return torch.device(name)


def collect_pictures(inputs: list[Path]) -> tuple[list[Path], list[str]]:
    """Pictures named or found in named folders (not their own ``-depth.png`` maps), and the problems met."""
    pictures, problems = [], []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PICTURE_SUFFIXES
                           and not p.name.endswith(OUTPUT_SUFFIX))
            if not found:
                problems.append(f"{path} holds no pictures ({', '.join(PICTURE_SUFFIXES)}).")
            pictures.extend(found)
        elif path.is_file():
            pictures.append(path)
        else:
            problems.append(f"{path} does not exist.")
    return list(dict.fromkeys(pictures)), problems


def plan_outputs(pictures: list[Path], output_dir: Path | None) -> list[DepthJob]:
    """``NAME-depth.png`` beside each picture or in ``output_dir``, planned over the whole run so that no map
    replaces another. Names are compared as a case-insensitive file system (macOS, Windows) would; pictures that
    would share one keep what tells them apart: their suffix (``pic_png-depth.png``), their folder's name
    (``x_day1-depth.png``), and failing both a number (``IMG_0001_2-depth.png`` for ``.jpg`` beside ``.JPG``)."""
    def folder(picture: Path) -> Path:
        return output_dir or picture.parent

    plain = {p: folder(p) / f"{p.stem}{OUTPUT_SUFFIX}" for p in pictures}
    groups: dict[str, list[Path]] = {}
    for picture, output in plain.items():
        groups.setdefault(_file_key(output), []).append(picture)
    taken = {key for key, group in groups.items() if len(group) == 1}
    outputs = {}
    for group in groups.values():
        for picture in group:
            outputs[picture] = plain[picture] if len(group) == 1 else _distinct(picture, group, folder(picture), taken)
    return [DepthJob(p, outputs[p]) for p in pictures]


def _file_key(path: Path) -> str:
    return os.path.abspath(path).casefold()


def _folder_name(picture: Path) -> str:
    return Path(os.path.abspath(picture)).parent.name


def _distinct(picture: Path, group: list[Path], folder: Path, taken: set[str]) -> Path:
    """A map's path for ``picture``, one of ``group`` that would all get the same name: marked with what sets it
    apart from the others, then numbered from 2 if that is not enough; its key is added to ``taken``."""
    parts = [picture.stem]
    if len({_folder_name(p).casefold() for p in group}) > 1:
        parts.append(_folder_name(picture))
    if len({p.suffix.casefold() for p in group}) > 1:
        parts.append(picture.suffix.lstrip(".").lower())
    base = "_".join(part for part in parts if part)
    for number in itertools.count(1):
        output = folder / f"{base}{f'_{number}' if number > 1 else ''}{OUTPUT_SUFFIX}"
        if _file_key(output) not in taken:
            taken.add(_file_key(output))
            return output


def _warn(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_output_dir(folder: Path) -> None:
    """Said once, before the model loads, rather than for each picture: a folder that cannot be made or written."""
    existing = next(p for p in (folder, *folder.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise Depth2ImgError(f"-o {folder} {where}; name a folder for the depth maps.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Depth2ImgError(f"-o {folder}: {existing} is not writable; name a folder you can write in.")


def run_depth(args: argparse.Namespace) -> int:
    """0 when every map was written or already there, 1 when some picture failed, 2 when nothing could be done;
    a ``Depth2ImgError`` for the whole run."""
    weights = open_weights(args.weights)  # identified and indexed once, here
    name = detect_weights(weights, args.estimator)
    if args.output_dir is not None:
        check_output_dir(args.output_dir)
    device = _device(args.device)
    if args.half and device.type == "cpu":
        raise Depth2ImgError("--half needs a GPU (--device cuda or mps): float16 on the CPU is slow and imprecise.")
    pictures, problems = collect_pictures(args.images)
    jobs, skipped, failed, written = [], 0, len(problems), 0
    for problem in problems:
        _warn(f"error: {problem}")
    for job in plan_outputs(pictures, args.output_dir):
        if job.output.name != f"{job.picture.stem}{OUTPUT_SUFFIX}":
            _warn(f"note: {job.picture} gets {job.output.name}: another picture has the same name")
        if job.output.exists() and not args.overwrite:
            _warn(f"skipped: {job.output} already exists (--overwrite replaces it)")
            skipped += 1
            continue
        try:
            jobs.append(dataclasses.replace(job, size=check_picture(job.picture)))
        except Depth2ImgError as error:
            _warn(f"error: {error}")
            failed += 1
    if jobs:
        written = _write_maps(jobs, name, weights, args, device)
        failed += len(jobs) - written
    elif not failed:
        _warn("nothing to do: every depth map already exists.")
    _warn(f"{written} written, {skipped} skipped, {failed} failed")
    if failed and not written and not skipped:
        _warn("error: nothing was done: no picture gave a depth map (see above).")
        return 2
    return 1 if failed else 0


def _write_maps(jobs: list[DepthJob], name: str, weights: WeightsFile, args: argparse.Namespace,
                device: torch.device) -> int:
    """How many maps were written; each picture counts on the bar once its map is written or it has failed.
    Pictures are read and prepared ahead in a background thread while the estimator runs, and those whose
    estimator input has one size go through it together (``depth_batches``): maps come size by size."""
    estimator = load_estimator_from_file(create_estimator(name, device="meta"), weights)
    estimator.to(device=device, dtype=torch.float16 if args.half else torch.float32)
    _warn(f"{name} on {device.type}{' (float16)' if args.half else ''}: {len(jobs)} picture(s)")
    spec = estimator.input_spec
    batches = [[jobs[index] for index in batch]
               for batch in batches_by_input_size([job.size for job in jobs], spec, args.batch_size)]
    # Read ahead by a batch: the next one is ready when the estimator is; at most that many inputs wait.
    pictures = read_ahead([job for batch in batches for job in batch], lambda job: _prepared(job, spec),
                          ahead=0 if args.no_read_ahead else args.batch_size)
    progress = None
    if len(jobs) > 1:
        from tqdm import tqdm

        progress = tqdm(total=len(jobs), desc="depth", unit="picture")
    written = 0
    try:
        for batch in batches:
            for job, depth in _depths(batch, pictures, estimator, spec):
                error = depth if isinstance(depth, str) else _written(job, depth, args.bits)
                if progress is not None:
                    progress.update()
                _report(f"error: {job.picture}: {error}" if error else str(job.output), progress,
                        sys.stderr if error else sys.stdout)
                written += error is None
    finally:  # the reading stopped, and the bar closed before an interruption is reported so it is not drawn again
        pictures.close()
        if progress is not None:
            progress.close()
    return written


def _prepared(job: DepthJob, spec: InputSpec) -> tuple[torch.Tensor, tuple[int, int]]:
    """The picture as the estimator takes it, and its size: what the background thread does."""
    picture, size = read_picture(job.picture)
    return prepare_estimator_input(picture, spec), size


def _depths(batch: list[DepthJob], pictures, estimator, spec: InputSpec):
    """``(job, depth)`` for each job of ``batch`` whose depth was estimated, ``(job, what went wrong)`` for the
    others; ``pictures`` gives each job's prepared picture (``read_ahead``), in the batches' order."""
    ready = []
    for _ in batch:
        job, prepared, error = next(pictures)
        if error is None:
            ready.append((job, *prepared))
        else:
            yield job, _failure(error)
    outcomes = depths_of_batch(estimator, [x for _, x, _ in ready], [size for _, _, size in ready], spec)
    for (job, _, _), depth in zip(ready, outcomes, strict=True):
        yield job, _failure(depth) if isinstance(depth, Exception) else depth


def _written(job: DepthJob, depth: torch.Tensor, bits: int) -> str | None:
    """What went wrong writing this picture's map, or None once it is written."""
    try:
        job.output.parent.mkdir(parents=True, exist_ok=True)
        save_depth_png(depth, job.output, bits=bits)
    except Exception as error:
        return _failure(error)
    return None


def _failure(error: Exception) -> str:
    """What to tell about a picture that failed; an error no picture explains is raised again."""
    if isinstance(error, (Depth2ImgError, OSError)):
        return str(error)
    if isinstance(error, (RuntimeError, MemoryError)) and is_out_of_memory(error):  # a person's own huge picture
        return "not enough memory to read it and estimate its depth; scale it down or free memory."
    raise error


def _report(line: str, progress, stream) -> None:
    if progress is not None:
        progress.write(line, file=stream)  # keeps the bar whole
        stream.flush()
    else:
        print(line, file=stream, flush=True)
