"""The depth cache (a repeated picture runs no forward) and batching (N pictures, one forward)."""

import pytest
import torch
from reference import synthetic_batch

from lib_depth2img import Depth2ImgError
from lib_depth2img.adjustments import DepthAdjustments
from lib_depth2img.depth import estimate_depth
from lib_depth2img.depth_cache import DepthCache
from lib_depth2img.pipeline import condition_pictures
from lib_depth2img.transforms import DPT_INPUT, estimator_input_size


class Forwards:
    def __init__(self, module):
        self.batches = []
        self.handle = module.register_forward_hook(lambda m, i, o: self.batches.append(i[0].shape[0]))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def _four():
    base = synthetic_batch(96, 128)
    return torch.cat([base, base.flip(-1), base.flip(-2), 1 - base])


def test_repeated_pictures_run_no_forward_and_give_the_same_depth(tiny_hybrid):
    cache = DepthCache()
    pictures = _four()
    with Forwards(tiny_hybrid) as forwards:
        first = condition_pictures(tiny_hybrid, pictures, (12, 16), cache=cache)
        again = condition_pictures(tiny_hybrid, pictures, (12, 16), cache=cache,
                                   adjustments=DepthAdjustments(invert=True, gamma=2.0))
        plain_again = condition_pictures(tiny_hybrid, pictures, (12, 16), cache=cache)
    assert forwards.batches == [4]  # four pictures: one forward; then none at all
    assert torch.equal(first.conditioning, plain_again.conditioning)
    assert not torch.equal(first.conditioning, again.conditioning)
    assert (cache.hits, cache.misses) == (8, 4)


def test_only_new_pictures_are_estimated(tiny_hybrid):
    cache = DepthCache()
    pictures = _four()
    condition_pictures(tiny_hybrid, pictures[:2], (12, 16), cache=cache)
    with Forwards(tiny_hybrid) as forwards:
        mixed = condition_pictures(tiny_hybrid, pictures, (12, 16), cache=cache)
    assert forwards.batches == [2]
    direct = condition_pictures(tiny_hybrid, pictures, (12, 16))
    assert torch.allclose(mixed.conditioning, direct.conditioning, atol=1e-3)


def test_cache_is_bounded_oldest_out_first(tiny_hybrid):
    height, width = estimator_input_size(96, 128, DPT_INPUT)  # the cache keeps depth at the estimator's size
    one_map = height * width * 4
    cache = DepthCache(max_bytes=2 * one_map)
    pictures = _four()
    for index in range(3):
        condition_pictures(tiny_hybrid, pictures[index:index + 1], (12, 16), cache=cache)
    assert len(cache) == 2
    with Forwards(tiny_hybrid) as forwards:
        condition_pictures(tiny_hybrid, pictures[2:3], (12, 16), cache=cache)  # newest: kept
        condition_pictures(tiny_hybrid, pictures[0:1], (12, 16), cache=cache)  # oldest: gone
    assert forwards.batches == [1]
    cache.clear()
    assert len(cache) == 0


class RunsOutOfMemoryAbove(torch.nn.Module):
    """Stands in for a GPU that fits only ``limit`` pictures at once."""

    def __init__(self, limit):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(1))
        self.limit, self.batches = limit, []

    def forward(self, x):
        self.batches.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x.mean(dim=1) * self.scale


def test_a_batch_splits_only_when_memory_runs_out():
    pictures = _four()
    whole = estimate_depth(RunsOutOfMemoryAbove(4), pictures, input_spec=DPT_INPUT)
    estimator = RunsOutOfMemoryAbove(1)
    split = estimate_depth(estimator, pictures, input_spec=DPT_INPUT)
    assert estimator.batches == [4, 2, 1, 1, 2, 1, 1]
    assert torch.allclose(split, whole)
    with pytest.raises(Depth2ImgError, match="Not enough memory"):
        estimate_depth(RunsOutOfMemoryAbove(0), pictures[:1], input_spec=DPT_INPUT)
