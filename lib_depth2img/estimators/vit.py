"""The Vision Transformer inside MiDaS v3 DPT models, with timm 0.6.13's parameter names.

Only what DPT needs: patch embedding (plain or hybrid), position embeddings resized
to any grid, the transformer blocks, and the outputs of chosen blocks. The final norm
and the classifier head are kept as parameters so release files load strictly, but
DPT never reads their output, so they are not run.
"""

from __future__ import annotations

import functools
import platform

import torch
import torch.nn.functional as F
from torch import nn

from lib_depth2img.estimators.resnetv2 import ResNetV2Backbone

PATCH = 16


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, by the kernel that is fastest for the device and dtype.

    On CPU in bfloat16 torch's fused kernel is slower than plain matmul-softmax-matmul (timm's
    non-fused path): 3.7x on torch 2.1.2, 1.5x on 2.13 (one picture, ViT-B). Everywhere else the fused
    kernel wins, float16 on CPU included (explicit matmuls are 8x slower there on 2.13; 2.1.2 runs no
    float16 matmul on CPU at all).
    """
    if q.device.type == "cpu" and q.dtype == torch.bfloat16:
        weights = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        return weights.softmax(dim=-1) @ v
    return F.scaled_dot_product_attention(q, k, v)


# Rows (tokens of all pictures) from which oneDNN's matrix product beats the default one on CPU in float32.
# Whole forwards on 2 threads, torch 2.1.2 / 2.13: DPT at 577 rows (one picture) 0.99-1.04x / 0.92x;
# Depth Anything V2 Base at 1370 (one picture) 0.94x / 0.83x; Small and Base at 2740 0.91x / 0.83-0.87x;
# DPT-Hybrid at 2308 (four pictures) 0.93x / 0.89x. All on x86-64, the only processor measured.
ONEDNN_MIN_ROWS = 1024


@functools.cache  # asked at the first large CPU forward, not at import: the probe costs the WebUI's start-up 20 ms
def onednn_linear():
    """torch's oneDNN linear (the kernel torch.compile picks on CPU), or None: on processors other than
    x86-64 (not measured), and where this torch lacks the kernel or cannot run it."""
    if platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available():
        return None
    try:
        kernel = torch.ops.mkldnn._linear_pointwise
        # A build may list the kernel and still fail to run it.
        kernel(torch.ones(1, 2), torch.ones(3, 2), torch.zeros(3), "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return kernel


class TokenLinear(nn.Linear):
    """``nn.Linear`` (same parameters, same numbers up to rounding) that takes oneDNN's kernel for the
    token-heavy CPU float32 inference case, where it is faster."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_grad_enabled()
                and x.numel() >= ONEDNN_MIN_ROWS * x.shape[-1] and onednn_linear() is not None):
            return onednn_linear()(x, self.weight, self.bias, "none", [], "")
        return super().forward(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = TokenLinear(dim, dim * 3)
        self.proj = TokenLinear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = TokenLinear(dim, hidden)
        self.fc2 = TokenLinear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """A pre-norm transformer block; DINOv2's (Depth Anything) scales each branch by a learned ``gamma``."""

    def __init__(self, dim: int, heads: int, layer_scale: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * 4)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """16x16 patches straight from the picture (DPT-Large)."""

    def __init__(self, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.proj(x), []


class HybridEmbed(nn.Module):
    """ResNet-50 features at stride 16, projected to tokens (DPT-Hybrid)."""

    def __init__(self, dim: int):
        super().__init__()
        self.backbone = ResNetV2Backbone()
        self.proj = nn.Conv2d(1024, dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = self.backbone(x)
        return self.proj(stages[-1]), stages[:-1]


class VisionTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, hybrid: bool, trained_grid: int = 24):
        super().__init__()
        self.patch_embed = HybridEmbed(dim) if hybrid else PatchEmbed(dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + trained_grid**2, dim))
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 1000)
        self.trained_grid = trained_grid

    def position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """The trained 24x24 grid resized bilinearly to the input's grid, as MiDaS does."""
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        if (grid_h, grid_w) != (self.trained_grid, self.trained_grid):
            side = self.trained_grid
            grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
            grid = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([cls_pos, grid], dim=1)

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Returns (the patch embedding's intermediate feature maps, the tokens after each tapped block)."""
        patches, early_features = self.patch_embed(x)
        b, _, grid_h, grid_w = patches.shape
        tokens = patches.flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(grid_h, grid_w)
        tapped = []
        for index, block in enumerate(self.blocks[: max(taps) + 1]):
            tokens = block(tokens)
            if index in taps:
                tapped.append(tokens)
        return early_features, tapped
