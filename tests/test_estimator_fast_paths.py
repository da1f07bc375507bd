"""The estimators' fast paths give the numbers of the plain ones: attention chosen by device and dtype, the
transformer's linear layers on oneDNN for many tokens, the ResNet stem's cached standardised weights, and a
meta-device build loaded without a second copy."""

import pytest
import torch
import torch.nn.functional as F
from reference import reference_layout, rule_weights
from torch import nn

from lib_depth2img.estimators import create_estimator, vit
from lib_depth2img.estimators.resnetv2 import StdConv2dSame, pad_same
from lib_depth2img.weights import load_estimator_weights, read_state_dict


def _qkv(dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    return tuple((torch.randn(2, 4, 50, 32, generator=generator) * 2).to(dtype) for _ in range(3))


def _exact_attention(q, k, v) -> torch.Tensor:
    q, k, v = (t.double() for t in (q, k, v))
    return torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, dim=-1) @ v


def _cpu_runs_float16_matmul() -> bool:
    try:
        torch.ones(2, 2, dtype=torch.float16) @ torch.ones(2, 2, dtype=torch.float16)
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize(("dtype", "fused", "tolerance"), [(torch.float32, True, 1e-5), (torch.bfloat16, False, 2e-2),
                                                           (torch.float16, True, 2e-3)])
def test_attention_kernel_is_chosen_by_dtype_on_cpu_and_gives_the_same_numbers(monkeypatch, dtype, fused, tolerance):
    calls, fused_kernel = [], F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].dtype)
        return fused_kernel(*args, **kwargs)

    monkeypatch.setattr(vit.F, "scaled_dot_product_attention", spy)
    q, k, v = _qkv(dtype)
    if dtype == torch.float16 and not _cpu_runs_float16_matmul():
        pytest.skip("this torch has no float16 matmul on CPU (2.1 has none)")
    out = vit.attention(q, k, v)
    assert (calls == [dtype]) is fused
    assert out.dtype == dtype
    expected = _exact_attention(q, k, v)
    assert (out.double() - expected).abs().max().item() < tolerance * expected.abs().max().item()
    if not fused:  # the explicit path and torch's fused kernel agree to the dtype's rounding
        fused_out = fused_kernel(q, k, v).double()
        assert (out.double() - fused_out).abs().max().item() < 2 * tolerance * expected.abs().max().item()


@pytest.mark.skipif(vit.onednn_linear() is None, reason="this torch has no oneDNN linear kernel")
@pytest.mark.parametrize(("tokens", "grad", "onednn"), [(vit.ONEDNN_MIN_ROWS, False, True),
                                                        (vit.ONEDNN_MIN_ROWS - 1, False, False),
                                                        (vit.ONEDNN_MIN_ROWS, True, False)])
def test_token_linear_takes_onednn_only_for_many_tokens_without_autograd(monkeypatch, tokens, grad, onednn):
    calls = []
    kernel = vit.onednn_linear()
    spy = lambda *args: calls.append(args[0].shape) or kernel(*args)  # noqa: E731
    monkeypatch.setattr(vit, "onednn_linear", lambda: spy)
    generator = torch.Generator().manual_seed(1)
    layer = vit.TokenLinear(64, 96)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(96, 64, generator=generator) / 8)
        layer.bias.copy_(torch.randn(96, generator=generator))
    x = torch.randn(1, tokens, 64, generator=generator)
    with torch.set_grad_enabled(grad):
        out = layer(x)
    assert bool(calls) is onednn
    assert out.shape == (1, tokens, 96) and out.requires_grad is grad
    expected = x.double() @ layer.weight.detach().double().T + layer.bias.detach().double()
    assert (out.detach().double() - expected).abs().max().item() < 1e-5 * expected.abs().max().item()


def test_token_linear_keeps_the_default_kernel_where_onednn_was_not_measured_or_cannot_run(monkeypatch):
    monkeypatch.setattr(vit.platform, "machine", lambda: "arm64")  # Apple silicon, Linux on ARM: not measured
    probe = vit.onednn_linear.__wrapped__  # the check itself, not its answer cached for this machine
    assert probe() is None
    monkeypatch.setattr(vit.platform, "machine", lambda: "x86_64")

    def broken(*args):
        raise RuntimeError("could not create a primitive")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", broken)
    assert probe() is None


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


def test_a_copied_or_pickled_convolution_remakes_its_standardised_weight():
    import copy
    import pickle

    conv = _conv_with(torch.randn(4, 3, 3, 3))
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        conv(x)
        for twin in (copy.deepcopy(conv), pickle.loads(pickle.dumps(conv))):
            assert twin._standardised is None
            with torch.no_grad():
                twin.weight.mul_(-1)
            assert torch.allclose(twin(x), _uncached(twin, x), atol=1e-5)
        assert torch.allclose(conv(x), _uncached(conv, x), atol=1e-5)


def test_standardised_weight_keeps_its_gradient_under_autograd():
    conv = _conv_with(torch.randn(4, 3, 3, 3))
    with torch.no_grad():
        conv(torch.randn(1, 3, 8, 8))  # fills the cache
    conv(torch.randn(1, 3, 8, 8)).square().sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_a_meta_build_takes_the_state_without_a_copy_and_gives_the_normal_builds_depth(hybrid_estimator,
                                                                                      hybrid_rule_state):
    state = {k: v.clone() for k, v in hybrid_rule_state.items()}
    estimator = create_estimator("dpt_hybrid", device="meta")
    load_estimator_weights(estimator, state)
    key = "pretrained.model.blocks.3.attn.qkv.weight"
    assert estimator.state_dict()[key].data_ptr() == state[key].data_ptr()  # the same memory, not a copy
    assert not any(t.is_meta for t in (*estimator.parameters(), *estimator.buffers()))
    assert not estimator.training and estimator.estimator_name == "dpt_hybrid"
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        assert torch.equal(estimator(x), hybrid_estimator(x))


def test_a_meta_build_casts_reduced_precision_weights_and_fills_batchnorm_counters():
    layout = reference_layout("midas-v21_small.json")
    state = rule_weights({k: v for k, v in layout.items() if not k.endswith("num_batches_tracked")})
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.5
    normal = create_estimator("midas_v21_small")
    load_estimator_weights(normal, state)
    normal.half().float()  # the same rounding the float16 file gives
    meta = create_estimator("midas_v21_small", device="meta")
    load_estimator_weights(meta, {k: v.half() for k, v in state.items()})
    assert {t.dtype for t in meta.parameters()} == {torch.float32}
    counters = [b for name, b in meta.named_buffers() if name.endswith("num_batches_tracked")]
    assert counters and all(not b.is_meta and b.item() == 0 for b in counters)
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        assert torch.equal(meta(x), normal(x))


class _WithComputedBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.register_buffer("ramp", torch.arange(3.0), persistent=False)  # computed, never in a file

    def materialise_computed_buffers(self):
        self.ramp = torch.arange(3.0, device=self.scale.device)


class _ForgetsItsBuffer(_WithComputedBuffer):
    materialise_computed_buffers = None


def test_buffers_no_file_holds_are_computed_after_a_meta_build():
    with torch.device("meta"):
        module = _WithComputedBuffer()
    load_estimator_weights(module, {"scale": torch.full((3,), 2.0)})
    assert torch.equal(module.ramp, torch.arange(3.0)) and torch.equal(module.scale, torch.full((3,), 2.0))
    with torch.device("meta"):
        forgetful = _ForgetsItsBuffer()
    with pytest.raises(RuntimeError, match="ramp"):
        load_estimator_weights(forgetful, {"scale": torch.ones(3)})


def test_safetensors_weights_stay_backed_by_the_file(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    saved = {"a.weight": torch.randn(64, 32), "b.bias": torch.randn(7).half(), "c": torch.arange(5)}
    save_file(saved, str(path))
    before = path.read_bytes()
    state = read_state_dict(path)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert state["a.weight"].untyped_storage().nbytes() == path.stat().st_size  # a view of the mapped file
    state["a.weight"].add_(1)  # a private mapping: the file never changes
    assert path.read_bytes() == before
    assert torch.equal(read_state_dict(path, "a.")["a.weight"], saved["a.weight"])


def _convolution_weights(module: nn.Module) -> list[torch.Tensor]:
    """What the convolutions convolve with: the weight, or the standardised copy of it (ResNet stem)."""
    return [m.standardised_weight() if isinstance(m, StdConv2dSame) else m.weight
            for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def test_convolutions_run_channels_last_on_cpu_and_go_back_elsewhere(hybrid_rule_state):
    from lib_depth2img.estimators.memory_format import match_memory_format

    estimator = create_estimator("dpt_hybrid", device="meta")
    load_estimator_weights(estimator, hybrid_rule_state)
    spatial = [m.weight for m in estimator.modules() if isinstance(m, nn.Conv2d) and m.weight.shape[-1] > 1]
    assert spatial and not any(w.is_contiguous(memory_format=torch.channels_last) for w in spatial)
    with torch.inference_mode():
        estimator(torch.zeros(1, 3, 64, 64))
        weights = _convolution_weights(estimator)
    assert all(w.is_contiguous(memory_format=torch.channels_last) and not w.is_inference() for w in weights)
    elsewhere = torch.zeros(1, 3, 64, 64, device="meta")  # a device that is not the CPU
    assert match_memory_format(estimator, elsewhere).is_contiguous()
    assert all(m.weight.is_contiguous() for m in estimator.modules() if isinstance(m, nn.Conv2d))
    for key, value in estimator.state_dict().items():
        assert torch.equal(value, hybrid_rule_state[key]), key  # the same numbers in any layout


def test_an_estimator_from_a_safetensors_checkpoint_keeps_its_weights_in_the_file(depth_checkpoint_file,
                                                                                  hybrid_rule_state):
    from lib_depth2img.checkpoint_estimator import load_checkpoint_estimator

    estimator = load_checkpoint_estimator(depth_checkpoint_file, "dpt_hybrid")
    weight = estimator.pretrained.model.blocks[5].mlp.fc1.weight
    assert weight.untyped_storage().nbytes() == depth_checkpoint_file.stat().st_size  # no copy in memory
    assert torch.equal(weight, hybrid_rule_state["pretrained.model.blocks.5.mlp.fc1.weight"])
