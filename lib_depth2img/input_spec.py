"""How each estimator wants its pictures: plain data, free of torch, so that the estimators' table (and the
CLI's --help, which lists it) can be read without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InputSpec:
    """How an estimator wants its pictures (the resize rule, then mean/std normalisation), and how its
    official pipeline resizes the prediction back to the picture's size."""

    size: int
    resize_method: str  # "minimal": scale as little as possible; "upper_bound": fit inside size x size;
    # "lower_bound": cover size x size
    multiple_of: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_mode: str = "bicubic"  # MiDaS's run.py: bicubic; Depth Anything's infer_image: bilinear
    output_align_corners: bool = False


DPT_INPUT = InputSpec(384, "minimal", 32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
MIDAS_V21_INPUT = InputSpec(384, "upper_bound", 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
MIDAS_V21_SMALL_INPUT = InputSpec(256, "upper_bound", 32, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
DEPTH_ANYTHING_INPUT = InputSpec(518, "lower_bound", 14, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                                 output_mode="bilinear", output_align_corners=True)
