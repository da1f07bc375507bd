"""Command line: ``depth IMAGE... --weights FILE`` writes ``<name>-depth.png`` per picture; ``convert`` moves a
depth model between a diffusers folder and a single-file WebUI checkpoint."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from lib_depth2img.checkpoint import DEPTH_WEIGHTS_PREFIX, estimator_from_weights
from lib_depth2img.depth import estimate_depth
from lib_depth2img.depth_image import save_depth_png
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.estimators import ESTIMATOR_NAMES, create_estimator
from lib_depth2img.tensor_index import read_tensor_index
from lib_depth2img.weights import WHERE_WEIGHTS_LIVE, load_estimator_from_file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_depth2img", description="SD2 depth-to-image tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    depth = commands.add_parser("depth", help="write the depth map of each picture as <name>-depth.png")
    depth.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    depth.add_argument("--weights", required=True, type=Path, metavar="FILE",
                       help="a MiDaS .pt/.safetensors file or a whole SD2 depth checkpoint")
    depth.add_argument("--estimator", choices=ESTIMATOR_NAMES, help="default: recognised from the weights")
    depth.add_argument("-o", "--output-dir", type=Path, help="default: beside each picture")
    depth.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    depth.add_argument("--half", action="store_true", help="run the estimator in float16 (GPU only)")
    depth.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bits per pixel of the PNG")
    convert = commands.add_parser("convert", help="diffusers depth pipeline folder <-> WebUI checkpoint")
    convert.add_argument("source", type=Path, help="a diffusers folder, or with --to diffusers a checkpoint")
    convert.add_argument("out", type=Path, help="OUT.safetensors (OUT.yaml is written beside it), or a new folder")
    convert.add_argument("--to", choices=("checkpoint", "diffusers"), default="checkpoint")
    convert.add_argument("--half", action="store_true", help="write float16 weights (half the size)")
    convert.add_argument("--base", type=Path, metavar="FOLDER",
                         help="with --to diffusers: diffusers folder to copy tokenizer/ and feature_extractor/ from")
    return parser


def run_convert(args: argparse.Namespace) -> list[Path]:
    if args.to == "checkpoint":
        if args.source.is_file():
            raise Depth2ImgError(f"{args.source} is a file: to make a diffusers folder of it, add --to diffusers.")
        from lib_depth2img.conversion.to_checkpoint import diffusers_to_checkpoint

        return list(diffusers_to_checkpoint(args.source, args.out, args.half))
    if not args.source.is_file():
        raise Depth2ImgError(f"{args.source} is not a checkpoint file.")
    from lib_depth2img.conversion.to_diffusers import WEIGHTLESS, checkpoint_to_diffusers

    folder = checkpoint_to_diffusers(args.source, args.out, args.half, args.base)
    if not args.base:
        print(f"note: copy {' and '.join(f'{name}/' for name in WEIGHTLESS)} from the diffusers folder the model "
              f"came from (e.g. stabilityai/stable-diffusion-2-depth) into {folder}, or pass --base FOLDER.",
              file=sys.stderr)
    return [folder]


def _detect_estimator(weights: Path) -> str:
    if not weights.is_file():
        raise Depth2ImgError(f"Weights file {weights} does not exist. {WHERE_WEIGHTS_LIVE}")
    index = read_tensor_index(weights)
    name = estimator_from_weights(index, DEPTH_WEIGHTS_PREFIX) or estimator_from_weights(index, "")
    if name not in ESTIMATOR_NAMES:
        raise Depth2ImgError(f"{weights} holds no MiDaS DPT weights that this tool recognises. Expected "
                             f"dpt_hybrid-midas-501f0c75.pt, dpt_large-midas-2f21e586.pt or an SD2 depth "
                             f"checkpoint. {WHERE_WEIGHTS_LIVE}")
    return name


def _device(name: str) -> torch.device:
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available[name]:
        raise Depth2ImgError(f"--device {name} was asked for, but this torch build has no {name} device.")
    return torch.device(name)


def _load_picture(path: Path) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as error:
        raise Depth2ImgError(f"Cannot read the picture {path}: {error}.") from error
    return torch.from_numpy(rgb).permute(2, 0, 1)[None]


def run_depth(args: argparse.Namespace) -> list[Path]:
    device = _device(args.device)
    if args.half and device.type == "cpu":
        raise Depth2ImgError("--half needs --device cuda or mps: float16 on the CPU is slow and imprecise.")
    estimator = create_estimator(args.estimator or _detect_estimator(args.weights))
    load_estimator_from_file(estimator, args.weights)
    estimator.to(device=device, dtype=torch.float16 if args.half else torch.float32)
    images = args.images
    if len(images) > 1:
        from tqdm import tqdm

        images = tqdm(images, desc="depth", unit="picture")
    written = []
    for path in images:
        depth = estimate_depth(estimator, _load_picture(path).to(device))
        out_dir = args.output_dir or path.parent
        out_dir.mkdir(parents=True, exist_ok=True)
        written.append(save_depth_png(depth, out_dir / f"{path.stem}-depth.png", bits=args.bits))
    return written


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        for path in (run_convert if args.command == "convert" else run_depth)(args):
            print(path)
    except Depth2ImgError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
