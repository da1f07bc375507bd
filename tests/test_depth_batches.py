"""Pictures of one estimator input size share a forward; each depth is the one the picture alone gets."""

import copy

import pytest
import torch
from reference import synthetic_batch

from lib_depth2img.depth import predict_depth, resize_depth
from lib_depth2img.depth_batches import batches_by_input_size, depths_of_batch
from lib_depth2img.errors import Depth2ImgError
from lib_depth2img.input_spec import DPT_INPUT, MIDAS_V21_SMALL_INPUT
from lib_depth2img.transforms import prepare_estimator_input


def test_batches_group_pictures_by_their_input_size_in_the_order_sizes_first_come():
    # MiDaS v2.1 small fits inside 256x256: 48x64 and 96x128 -> 192x256; 64x48 -> 256x192; 30x40 -> 192x256
    sizes = [(48, 64), (64, 48), (96, 128), (48, 64), (64, 48), (30, 40)]
    assert batches_by_input_size(sizes, MIDAS_V21_SMALL_INPUT, 2) == [[0, 2], [3, 5], [1, 4]]
    assert batches_by_input_size(sizes, MIDAS_V21_SMALL_INPUT, 3) == [[0, 2, 3], [5], [1, 4]]
    assert batches_by_input_size(sizes, MIDAS_V21_SMALL_INPUT, 1) == [[0], [2], [3], [5], [1], [4]]
    # DPT scales as little as possible: 48x64 by 6 -> 288x384; 64x48 -> 384x288; 384x384 stays
    assert batches_by_input_size([(384, 384), (48, 64), (64, 48), (96, 128)], DPT_INPUT, 4) == [[0], [1, 3], [2]]


def _prepared(sizes) -> list[torch.Tensor]:
    pictures = [synthetic_batch(*size) for size in sizes]
    pictures[1] = pictures[1].flip(-1)  # two pictures of one size, two depths
    return [prepare_estimator_input(picture, DPT_INPUT) for picture in pictures]


SIZES = [(48, 64), (48, 64), (96, 128), (60, 80)]  # all 288x384 for DPT


class Counting(torch.nn.Module):
    """The estimator, counting the pictures of each forward; more than ``limit`` at once raise MemoryError (a
    device that fits fewer), and so does a picture of ``refused`` mean, even alone."""

    def __init__(self, estimator, limit=64, refused=None):
        super().__init__()
        self.estimator, self.limit, self.refused, self.batches = estimator, limit, refused, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        refused = self.refused is not None and bool((x.mean(dim=(1, 2, 3)) - self.refused).abs().min() < 1e-6)
        if x.shape[0] > self.limit or refused:
            raise MemoryError
        return self.estimator(x)


def _alone(estimator, inputs) -> list[torch.Tensor]:
    return [resize_depth(predict_depth(estimator, x), size, DPT_INPUT) for x, size in zip(inputs, SIZES, strict=True)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_batch_gives_each_picture_the_depth_it_gets_alone(tiny_hybrid, dtype):
    """In float64 exactly: nothing of one picture reaches another. In float32 to float rounding, since a batch
    of four takes other kernels than one picture does."""
    estimator = copy.deepcopy(tiny_hybrid).to(dtype)
    inputs = _prepared(SIZES)
    counting = Counting(estimator)
    batched = list(depths_of_batch(counting, inputs, SIZES, DPT_INPUT))
    assert counting.batches == [4]
    alone = _alone(estimator, inputs)
    assert not torch.equal(alone[0], alone[1])
    for depth, expected, size in zip(batched, alone, SIZES, strict=True):
        assert depth.shape == (1, 1, *size) and depth.dtype == torch.float32
        if dtype == torch.float64:
            assert torch.equal(depth, expected)
        else:  # measured: up to 2.4e-5 of the depth's range, 1.6 levels of a 16-bit map
            assert (depth - expected).abs().max() <= 1e-4 * (expected.max() - expected.min())


def test_a_batch_that_runs_out_of_memory_is_run_one_at_a_time(tiny_hybrid):
    inputs = _prepared(SIZES)
    estimator = Counting(tiny_hybrid, limit=1)
    depths = list(depths_of_batch(estimator, inputs, SIZES, DPT_INPUT))
    assert estimator.batches == [4, 2, 1, 1, 2, 1, 1]  # halved until it fits (depth.py): each picture alone
    for depth, expected in zip(depths, _alone(tiny_hybrid, inputs), strict=True):
        assert torch.equal(depth, expected)


def test_a_picture_too_big_even_alone_fails_alone(tiny_hybrid):
    inputs = _prepared(SIZES)
    estimator = Counting(tiny_hybrid, refused=inputs[2].mean().item())
    depths = list(depths_of_batch(estimator, inputs, SIZES, DPT_INPUT))
    assert isinstance(depths[2], Depth2ImgError) and "Not enough memory" in str(depths[2])
    expected = _alone(tiny_hybrid, inputs)
    for index in (0, 1, 3):
        assert torch.equal(depths[index], expected[index])


def test_inputs_of_other_sizes_are_run_one_at_a_time(tiny_hybrid):
    """A PNG's header does not say its EXIF orientation: a batch planned from headers may hold another size."""
    sizes = [(48, 64), (64, 48)]
    inputs = [prepare_estimator_input(synthetic_batch(*size), DPT_INPUT) for size in sizes]
    estimator = Counting(tiny_hybrid)
    depths = list(depths_of_batch(estimator, inputs, sizes, DPT_INPUT))
    assert estimator.batches == [1, 1] and [tuple(d.shape[-2:]) for d in depths] == sizes
