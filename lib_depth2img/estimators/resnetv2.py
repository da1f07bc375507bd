"""The ResNet-50 (v2 layout, GroupNorm, weight-standardised convolutions) that feeds DPT-Hybrid's ViT.

Module and parameter names follow timm 0.6.13's ``ResNetV2`` as built by
``vit_base_resnet50_384``, because the MiDaS release files and SD2 depth checkpoints
store its weights under those names.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.memory_format import memory_format_for


def _same_padding(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
    """TensorFlow "SAME" padding, which the ViT-hybrid weights were trained with (extra pixel at the end)."""
    pad_h = _same_padding(x.shape[-2], kernel, stride)
    pad_w = _same_padding(x.shape[-1], kernel, stride)
    if pad_h or pad_w:
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=value)
    return x


class StdConv2dSame(nn.Conv2d):
    """Convolution whose weight is standardised per output channel before use (no bias).

    Without autograd the standardised weight is computed once and reused; it is computed again
    whenever the weight changes (another tensor, an in-place write, a cast or a move), so loading
    other weights needs nothing more. Writes through ``weight.data`` bypass torch's version counter:
    call ``forget_standardised_weight()`` after those.
    """

    lays_out_its_own_weight = True  # the convolution reads the standardised copy, laid out for the device

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        # Stride 1 with an odd kernel pads symmetrically, so it can be static.
        static = stride == 1 and kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(kernel_size - 1) // 2 if static else 0, bias=False)
        self.dynamic_pad = not static
        self.eps = 1e-8  # timm's hybrid ViT uses 1e-8, not StdConv2d's default 1e-6
        self.forget_standardised_weight()

    def forget_standardised_weight(self) -> None:
        self._standardised: torch.Tensor | None = None
        self._standardised_from: tuple = ()

    def __getstate__(self) -> dict:
        """Copies and pickles leave the cache behind (it holds a weak reference, and is cheap to remake)."""
        return {**self.__dict__, "_standardised": None, "_standardised_from": ()}

    def _standardise(self, weight: torch.Tensor) -> torch.Tensor:
        flat = weight.reshape(1, self.out_channels, -1)
        standardised = F.batch_norm(flat, None, None, training=True, momentum=0.0, eps=self.eps)
        return standardised.reshape(weight.shape).contiguous(memory_format=memory_format_for(weight.device))

    def standardised_weight(self) -> torch.Tensor:
        weight = self.weight
        if (torch.is_grad_enabled() and weight.requires_grad) or weight.is_inference():
            return self._standardise(weight)  # autograd must see it; an inference tensor has no version
        source = self._standardised_from
        if not source or source[0]() is not weight or source[1:] != _weight_state(weight):
            # A normal tensor even under inference mode, so the cache serves no_grad callers too.
            with torch.inference_mode(False), torch.no_grad():
                self._standardised = self._standardise(weight)
            self._standardised_from = (weakref.ref(weight), *_weight_state(weight))
        return self._standardised

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dynamic_pad:
            x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, self.standardised_weight(), None, self.stride, self.padding)


def _weight_state(weight: torch.Tensor) -> tuple:
    """What changes when a weight does: in-place writes bump ``_version``; casts and moves change the rest."""
    return weight._version, weight.data_ptr(), weight.dtype, weight.device, weight.stride()


class GroupNormAct(nn.GroupNorm):
    def __init__(self, channels: int, act: bool = True):
        super().__init__(32, channels, eps=1e-5)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x, inplace=True) if self.act else x  # in place: the fresh map is nobody else's


class DownsampleConv(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv = StdConv2dSame(in_channels, out_channels, 1, stride=stride)
        self.norm = GroupNormAct(out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, downsample: bool):
        super().__init__()
        mid = out_channels // 4
        self.downsample = DownsampleConv(in_channels, out_channels, stride) if downsample else None
        self.conv1 = StdConv2dSame(in_channels, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride=stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2dSame(mid, out_channels, 1)
        self.norm3 = GroupNormAct(out_channels, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x.add_(shortcut), inplace=True)


class Stage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, depth: int):
        super().__init__()
        self.blocks = nn.Sequential(*[
            Bottleneck(in_channels if i == 0 else out_channels, out_channels,
                       stride if i == 0 else 1, downsample=i == 0)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = StdConv2dSame(3, 64, 7, stride=2)
        self.norm = GroupNormAct(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.max_pool2d(pad_same(x, 3, 2, value=-math.inf), 3, 2)


class ResNetV2Backbone(nn.Module):
    """Three ResNet-50 stages (3, 4, 9 blocks): strides 4, 8 and 16, 256/512/1024 channels."""

    def __init__(self, layers: tuple[int, ...] = (3, 4, 9)):
        super().__init__()
        self.stem = Stem()
        widths = [256 * 2**i for i in range(len(layers))]
        self.stages = nn.Sequential(*[
            Stage(64 if i == 0 else widths[i - 1], widths[i], 1 if i == 0 else 2, depth)
            for i, depth in enumerate(layers)
        ])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output: DPT-Hybrid taps the first two and embeds the last."""
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs
