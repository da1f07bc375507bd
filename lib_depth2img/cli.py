"""Command line: ``depth`` writes the depth map of each picture; ``convert`` moves a depth model between a
diffusers folder and a single-file WebUI checkpoint. Installed as ``depth2img``; also ``python -m lib_depth2img``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import ESTIMATORS  # a table free of torch: --help answers at once, without it

DEPTH_EXAMPLES = """examples:
  {prog} depth holiday/ --weights models/Stable-diffusion/512-depth-ema.ckpt -o holiday-depth/
  {prog} depth photo.jpg --weights models/midas/dpt_hybrid-midas-501f0c75.pt --bits 16

Each picture gets NAME-depth.png (white = near); pictures that share a name keep their suffix
in it (pic_png-depth.png). Existing maps are skipped unless --overwrite is given.
Pictures are read ahead in a background thread while the estimator works, and those of one
shape go through it --batch-size at a time: maps are written shape by shape, in the order
the shapes first come; each map is the one a picture alone gets, to float rounding.
Exit status: 0 every map written (or already there), 1 some pictures failed (the others were
written), 2 nothing could be done (no picture could be read, or the weights or -o are wrong),
130 interrupted. The last line on stderr says: N written, N skipped, N failed.
"""
# A forward of 3 DPT-Hybrid pictures on a 2-core CPU took 0.67x the time of 3 alone (tests/benchmark_cli.py); a GPU
# gains more from larger batches, but 4 inputs (and 4 read ahead) keep the memory small everywhere.
DEFAULT_BATCH_SIZE = 4
CONVERT_EXAMPLES = """examples:
  {prog} convert my-depth-dreambooth/ my-depth.safetensors --half
  {prog} convert my-depth.safetensors my-depth-diffusers/ --to diffusers --base stable-diffusion-2-depth/
"""


def _batch_size(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of pictures, 1 or more")
    return int(text)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    def _get_help_string(self, action):  # a default worth saying: not an absent option or an off switch
        return action.help if action.default in (None, False) else super()._get_help_string(action)


def _program_name() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m lib_depth2img" if name in ("", "__main__.py", "-m", "-c") else name


def version() -> str:
    """The checkout's own pyproject.toml when run from one, else the installed package's metadata."""
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import re

        found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(encoding="utf-8"), re.MULTILINE)
        if found:
            return found.group(1)
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("sd-webui-depth2img")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    prog = _program_name()
    parser = argparse.ArgumentParser(prog=prog, description="SD2 depth-to-image tools.",
                                     formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    estimators = "; ".join(f"{name} ({spec.title}, {spec.licence})" for name, spec in ESTIMATORS.items())
    depth = commands.add_parser("depth", help="write the depth map of each picture as NAME-depth.png",
                                formatter_class=_HelpFormatter, epilog=DEPTH_EXAMPLES.format(prog=prog))
    depth.add_argument("images", nargs="+", type=Path, metavar="PICTURE_OR_FOLDER",
                       help="pictures, or folders whose pictures are all used")
    depth.add_argument("--weights", required=True, type=Path, metavar="FILE",
                       help="an estimator's release file (.pt/.pth/.safetensors) or a whole SD2 depth checkpoint")
    depth.add_argument("--estimator", choices=tuple(ESTIMATORS), metavar="NAME",
                       help=f"checked against the weights; default: recognised from them. Known: {estimators}")
    depth.add_argument("-o", "--output-dir", type=Path, metavar="FOLDER", help="default: beside each picture")
    depth.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                       help="auto: a CUDA GPU, else Apple MPS, else the CPU")
    depth.add_argument("--half", action="store_true", help="run the estimator in float16 (GPU only)")
    depth.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bits per pixel of the PNG")
    depth.add_argument("--overwrite", action="store_true", help="replace depth maps that already exist")
    depth.add_argument("--batch-size", type=_batch_size, default=DEFAULT_BATCH_SIZE, metavar="N",
                       help="pictures whose estimator input has one size are estimated N at a time")
    depth.add_argument("--no-read-ahead", action="store_true",
                       help="read each picture only when the estimator is ready for it, not in a background thread "
                            "while it works (slower; for comparison)")
    convert = commands.add_parser("convert", help="diffusers depth pipeline folder <-> WebUI checkpoint",
                                  formatter_class=_HelpFormatter, epilog=CONVERT_EXAMPLES.format(prog=prog))
    convert.add_argument("source", type=Path, help="a diffusers folder, or with --to diffusers a checkpoint")
    convert.add_argument("out", type=Path, help="OUT.safetensors (OUT.yaml is written beside it), or a folder")
    convert.add_argument("--to", choices=("checkpoint", "diffusers"), default="checkpoint",
                         help="checkpoint: a diffusers folder to one .safetensors and its .yaml; diffusers: back")
    convert.add_argument("--half", action="store_true", help="write float16 weights (half the size)")
    convert.add_argument("--base", type=Path, metavar="FOLDER",
                         help="with --to diffusers: diffusers folder to copy tokenizer/ and feature_extractor/ from")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing checkpoint and its yaml, or the model files in an existing folder")
    return parser


def run_convert(args: argparse.Namespace) -> int:
    if not args.source.exists():
        raise Depth2ImgError(f"{args.source} does not exist.")
    if args.to == "checkpoint":
        if args.source.is_file():
            raise Depth2ImgError(f"{args.source} is a file: to make a diffusers folder of it, add --to diffusers.")
        from lib_depth2img.conversion.to_checkpoint import diffusers_to_checkpoint

        written = diffusers_to_checkpoint(args.source, args.out, args.half, overwrite=args.overwrite)
    else:
        if not args.source.is_file():
            raise Depth2ImgError(f"{args.source} is not a checkpoint file.")
        from lib_depth2img.conversion.to_diffusers import WEIGHTLESS, checkpoint_to_diffusers

        written = [checkpoint_to_diffusers(args.source, args.out, args.half, args.base, overwrite=args.overwrite)]
        if not args.base:
            print(f"note: copy {' and '.join(f'{name}/' for name in WEIGHTLESS)} from the diffusers folder the model "
                  f"came from (e.g. stabilityai/stable-diffusion-2-depth) into {written[0]}, or pass --base FOLDER.",
                  file=sys.stderr)
    for path in written:
        print(path)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "convert":
            return run_convert(args)
        from lib_depth2img.cli_depth import run_depth  # torch, only now: --help and --version answer without it

        return run_depth(args)
    except Depth2ImgError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: maps written so far are complete; nothing is half-written.", file=sys.stderr)
        return 130
