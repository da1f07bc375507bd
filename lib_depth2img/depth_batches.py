"""Depth for a folder of pictures, as the CLI runs one: pictures whose estimator input has one size share one
forward, and a batch that fails is run again picture by picture, so that each picture gets its own map or its
own error. Batching changes no map beyond float noise: the estimators treat each picture of a batch alone
(eval-mode normalisation layers), and each map is resized back and stretched over its levels alone."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import nn

from lib_depth2img.depth import predict_depth, resize_depth
from lib_depth2img.transforms import InputSpec, estimator_input_size


def batches_by_input_size(sizes: Sequence[tuple[int, int]], spec: InputSpec, batch_size: int) -> list[list[int]]:
    """The indices of pictures of (height, width) ``sizes`` in batches of at most ``batch_size`` whose estimator
    inputs have one size: the input sizes in the order they first appear, each one's pictures in their order."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, (height, width) in enumerate(sizes):
        groups.setdefault(estimator_input_size(height, width, spec), []).append(index)
    return [group[start:start + batch_size] for group in groups.values() for start in range(0, len(group), batch_size)]


def depths_of_batch(estimator: nn.Module, inputs: Sequence[torch.Tensor], output_sizes: Sequence[tuple[int, int]],
                    spec: InputSpec, device: torch.device | None = None) -> Iterator[torch.Tensor | Exception]:
    """For each prepared input (``[1,3,h,w]``, ``prepare_estimator_input``), its depth ``[1,1,H,W]`` at its
    output size, or what raised while it was worked out; each resized only when it is asked for. Inputs of
    one size share one forward; if it fails (out of memory, most likely), each is run alone."""
    if len(inputs) > 1 and len({tuple(x.shape) for x in inputs}) == 1:
        try:
            prediction = predict_depth(estimator, torch.cat(list(inputs)), device=device)
        except Exception:  # each picture alone says which of them it was, and why
            pass
        else:
            yield from (_resized(prediction[index:index + 1], size, spec) for index, size in enumerate(output_sizes))
            return
    for x, size in zip(inputs, output_sizes, strict=True):
        try:
            prediction = predict_depth(estimator, x, device=device)
        except Exception as error:
            yield error
            continue
        yield _resized(prediction, size, spec)


def _resized(prediction: torch.Tensor, size: tuple[int, int], spec: InputSpec) -> torch.Tensor | Exception:
    try:
        return resize_depth(prediction, size, spec)
    except Exception as error:  # a panorama's map may not fit in memory: the caller says so, and goes on
        return error
