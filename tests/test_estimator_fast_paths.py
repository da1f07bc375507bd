"""The estimators' fast paths give the numbers of the plain ones: attention chosen by device and dtype, and the
ResNet stem's cached standardised weights."""

import pytest
import torch
import torch.nn.functional as F

from lib_depth2img.estimators import vit
from lib_depth2img.estimators.resnetv2 import StdConv2dSame, pad_same


def _qkv(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return tuple((torch.randn(2, 4, 50, 32, generator=generator) * 2).to(dtype) for _ in range(3))


def _exact_attention(q, k, v) -> torch.Tensor:
    q, k, v = (t.double() for t in (q, k, v))
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


@pytest.mark.parametrize(("dtype", "fused", "tolerance"), [(torch.float32, True, 1e-5), (torch.bfloat16, False, 2e-2),
                                                           (torch.float16, False, 2e-3)])
def test_attention_kernel_is_chosen_by_dtype_on_cpu_and_gives_the_same_numbers(monkeypatch, dtype, fused, tolerance):
    calls, fused_kernel = [], F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].dtype)
        return fused_kernel(*args, **kwargs)

    monkeypatch.setattr(vit.F, "scaled_dot_product_attention", spy)
    q, k, v = _qkv(dtype)
    out = vit.attention(q, k, v)
    assert (calls == [dtype]) is fused
    assert out.dtype == dtype
    expected = _exact_attention(q, k, v)
    assert (out.double() - expected).abs().max().item() < tolerance * expected.abs().max().item()
    if not fused:  # the explicit path and torch's fused kernel agree to the dtype's rounding
        fused_out = fused_kernel(q, k, v).double()
        assert (out.double() - fused_out).abs().max().item() < 2 * tolerance * expected.abs().max().item()


def _conv_with(weight: torch.Tensor) -> StdConv2dSame:
    conv = StdConv2dSame(weight.shape[1], weight.shape[0], weight.shape[-1], stride=2)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return conv


def _uncached(conv: StdConv2dSame, x: torch.Tensor) -> torch.Tensor:
    """The convolution computed from its weight as it is now, in float64: standardise, pad like TF, convolve."""
    w = conv.weight.detach().double()
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    var = w.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    return F.conv2d(pad_same(x.double(), 3, 2), (w - mean) / (var + conv.eps).sqrt(), stride=2).float()


def test_standardised_weight_is_cached_and_recomputed_when_the_weight_changes():
    generator = torch.Generator().manual_seed(1)
    conv = _conv_with(torch.randn(8, 3, 3, 3, generator=generator))
    x = torch.randn(1, 3, 17, 16, generator=generator)
    with torch.inference_mode():
        first = conv(x)
        cached = conv.standardised_weight()
        assert conv.standardised_weight() is cached  # computed once
        assert torch.equal(conv(x), first)
    with torch.no_grad():
        conv.weight.add_(torch.randn(8, 3, 3, 3, generator=generator))  # in place: a new version
    with torch.no_grad():
        assert conv.standardised_weight() is not cached
        assert torch.allclose(conv(x), _uncached(conv, x), atol=1e-5)
        assert not torch.allclose(conv(x), first, atol=1e-3)
    conv.load_state_dict({"weight": torch.randn(8, 3, 3, 3, generator=generator)})  # a normal reload
    with torch.inference_mode():
        assert torch.allclose(conv(x), _uncached(conv, x), atol=1e-5)
    conv.load_state_dict({"weight": torch.randn(8, 3, 3, 3, generator=generator)}, assign=True)  # a new tensor
    with torch.inference_mode():
        assert torch.allclose(conv(x), _uncached(conv, x), atol=1e-5)
    conv.double()  # a cast changes the weight's tensor under the same Parameter
    with torch.inference_mode():
        out = conv(x.double())
    assert out.dtype == torch.float64 and torch.allclose(out.float(), _uncached(conv, x), atol=1e-5)


def test_standardised_weight_keeps_its_gradient_under_autograd():
    conv = _conv_with(torch.randn(4, 3, 3, 3))
    with torch.no_grad():
        conv(torch.randn(1, 3, 8, 8))  # fills the cache
    conv(torch.randn(1, 3, 8, 8)).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


