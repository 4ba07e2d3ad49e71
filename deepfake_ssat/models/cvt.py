"""CvT (Wu et al. 2021, "Introducing Convolutions to Vision Transformers"), after the official code.

Images [B, C, H, W] pass three conv-embedding + conv-attention stages; the output tokens [B, 1 + h*w, D]
(class token in the last stage only) sit on the last stage's grid. For SSAT, hidden output patches are
replaced by a mask token rather than dropped (:meth:`CvT.forward_tokens`).
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, QuickGELU, trunc_normal_

from .encoder import EncoderDefaults
from .hier import frozen_bn_stats, mask_from_keep, replace_tokens, upsample_mask
from .masking import gather_tokens
from .registry import register_model


def _dw_bn(dim: int, kernel_size: int, stride: int) -> nn.Sequential:
    """Depthwise conv + BatchNorm: the convolutional projection of CvT."""
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size, stride=stride, padding=kernel_size // 2, groups=dim, bias=False),
        nn.BatchNorm2d(dim),
    )


class ConvAttention(nn.Module):
    """Multi-head attention whose q/k/v are convolutional projections of the token map.

    Prefix (class) tokens bypass the convs and are prepended to q, k and v.
    """

    def __init__(
            self,
            dim: int,
            num_heads: int,
            qkv_bias: bool = True,
            kernel_size: int = 3,
            stride_q: int = 1,
            stride_kv: int = 2,
            attn_drop: float = 0.0,
            proj_drop: float = 0.0,
            num_prefix_tokens: int = 0,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.num_prefix_tokens = num_prefix_tokens
        self.scale = dim ** -0.5  # official CvT: full width
        self.attn_drop = attn_drop
        self.conv_q = _dw_bn(dim, kernel_size, stride_q)
        self.conv_k = _dw_bn(dim, kernel_size, stride_kv)
        self.conv_v = _dw_bn(dim, kernel_size, stride_kv)
        self.proj_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_k = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj_v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, conv: nn.Module, proj: nn.Linear, prefix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Token map x [B, D, h, w] -> heads [B, H, P + h'*w', D/H] of ``proj(cat(prefix, conv(x)))``."""
        tokens = torch.cat([prefix, conv(x).flatten(2).transpose(1, 2)], dim=1)  # [B, P + h'*w', D]
        tokens = proj(tokens)
        return tokens.unflatten(2, (self.num_heads, -1)).transpose(1, 2)  # [B, H, P + h'*w', D/H]

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x [B, P + h*w, D] on the token ``grid`` (h, w) -> [B, P + h*w, D]."""
        batch, length, dim = x.shape
        prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
        patches = patches.transpose(1, 2).unflatten(2, grid)  # [B, D, h, w]
        q = self._heads(self.conv_q, self.proj_q, prefix, patches)
        k = self._heads(self.conv_k, self.proj_k, prefix, patches)
        v = self._heads(self.conv_v, self.proj_v, prefix, patches)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale)  # [B, H, P + h*w, D/H]
        x = x.transpose(1, 2).reshape(batch, length, dim)
        return self.proj_drop(self.proj(x))


class CvTBlock(nn.Module):
    """Pre-norm transformer block with :class:`ConvAttention`."""

    def __init__(
            self,
            dim: int,
            num_heads: int,
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            proj_drop: float = 0.0,
            attn_drop: float = 0.0,
            drop_path: float = 0.0,
            num_prefix_tokens: int = 0,
            act_layer: Callable[..., nn.Module] = QuickGELU,
            norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = ConvAttention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop,
                                  num_prefix_tokens=num_prefix_tokens)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """x [B, P + h*w, D] -> [B, P + h*w, D]."""
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvEmbed(nn.Module):
    """Overlapping strided conv + LayerNorm: token map [B, C, H, W] -> tokens [B, h*w, D]."""

    def __init__(
            self,
            in_chans: int,
            dim: int,
            kernel_size: int,
            stride: int,
            padding: int,
            norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size, stride=stride, padding=padding)
        self.norm = norm_layer(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> [B, h*w, D]."""
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class CvTStage(nn.Module):
    """Conv token embedding, optional class token, ``depth`` :class:`CvTBlock`s.

    ``proj_drop`` is the official ``drop_rate``: dropout on the tokens entering the blocks and after
    the attention projection and the MLP.
    """

    def __init__(
            self,
            in_chans: int,
            dim: int,
            depth: int,
            num_heads: int,
            kernel_size: int,
            stride: int,
            padding: int,
            cls_token: bool,
            drop_path: list[float],
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            proj_drop: float = 0.0,
            attn_drop: float = 0.0,
            act_layer: Callable[..., nn.Module] = QuickGELU,
            norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.embed = ConvEmbed(in_chans, dim, kernel_size, stride, padding, norm_layer)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cls_token else None
        self.num_prefix_tokens = int(cls_token)
        self.pos_drop = nn.Dropout(proj_drop)
        self.blocks = nn.ModuleList([
            CvTBlock(dim, num_heads, mlp_ratio, qkv_bias, proj_drop, attn_drop, drop_path[i],
                     self.num_prefix_tokens, act_layer, norm_layer)
            for i in range(depth)
        ])

    def forward_tokens(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Embedded tokens [B, h*w, D] -> [B, P + h*w, D] (P = 1 with a class token)."""
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x, grid)
        return x


class CvT(EncoderDefaults, nn.Module):
    """Convolutional vision transformer; ``grid_size`` / ``patch_size`` describe the output tokens.

    ``embed`` is the stage-1 conv embedding, ``forward_tokens`` the rest (and the masked pass).

    Three stages, each an overlapping strided conv token embedding + LayerNorm followed by blocks whose
    q/k/v come from a depthwise 3x3 conv + BatchNorm on the token map (stride 1 for q, 2 for k/v) and
    a linear layer. No position embedding; a class token only in the last stage, which feeds the
    head. Official quirks kept: QuickGELU, attention scaled by ``dim ** -0.5`` (the full width, not
    the head width), stochastic depth in the last stage only.
    """

    def __init__(
            self,
            img_size: int = 224,
            in_chans: int = 3,
            num_classes: int = 1000,
            dims: tuple[int, ...] = (64, 192, 384),
            depths: tuple[int, ...] = (1, 2, 10),
            num_heads: tuple[int, ...] = (1, 3, 6),
            kernel_sizes: tuple[int, ...] = (7, 3, 3),
            strides: tuple[int, ...] = (4, 2, 2),
            paddings: tuple[int, ...] = (2, 1, 1),
            mlp_ratio: float = 4.0,
            qkv_bias: bool = True,
            drop_rate: float = 0.0,
            attn_drop_rate: float = 0.0,
            drop_path_rate: float = 0.1,
            act_layer: Callable[..., nn.Module] = QuickGELU,
            norm_layer: Callable[..., nn.Module] = partial(nn.LayerNorm, eps=1e-5),
    ):
        """``drop_path_rate``: stochastic depth of the last stage, rising linearly over its blocks
        (the official CvT-13 setting is 0 / 0 / 0.1)."""
        super().__init__()
        self.img_size = img_size
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.num_features = dims[-1]
        self.num_prefix_tokens = 1
        self.patch_size = math.prod(strides)  # total stride
        grids = []
        side = img_size
        for k, s, p in zip(kernel_sizes, strides, paddings):
            side = (side + 2 * p - k) // s + 1
            grids.append((side, side))
        self.stage_grids = tuple(grids)  # token grid of every stage
        if side * self.patch_size != img_size:
            raise ValueError(f"img_size {img_size} must be a multiple of the total stride {self.patch_size}")
        self.grid_size = self.stage_grids[-1]
        self.mask_grid_size, self.mask_patch_size = self.grid_size, self.patch_size
        num_stages = len(dims)
        stages = []
        for i in range(num_stages):
            last = i == num_stages - 1
            rates = [drop_path_rate * j / max(depths[i] - 1, 1) if last else 0.0 for j in range(depths[i])]
            stages.append(CvTStage(
                dims[i - 1] if i else in_chans, dims[i], depths[i], num_heads[i], kernel_sizes[i], strides[i],
                paddings[i], cls_token=last, drop_path=rates, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                proj_drop=drop_rate, attn_drop=attn_drop_rate, act_layer=act_layer, norm_layer=norm_layer,
            ))
        self.stages = nn.ModuleList(stages)
        self.mask_token = nn.Parameter(torch.zeros(dims[0]))
        self.norm = norm_layer(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)
        for p in (self.stages[-1].cls_token, self.mask_token):
            trunc_normal_(p, std=0.02)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {f"stages.{len(self.stages) - 1}.cls_token", "mask_token"}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> stage-1 tokens [B, h1*w1, D1]."""
        return self.stages[0].embed(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-1 tokens [B, h1*w1, D1] -> normalised output tokens [B, 1 + h*w, D]."""
        for i, stage in enumerate(self.stages):
            if i:
                x = x.transpose(1, 2).unflatten(2, self.stage_grids[i - 1])  # [B, D_prev, h_prev, w_prev]
                x = stage.embed(x)  # [B, h*w, D]
            x = stage.forward_tokens(x, self.stage_grids[i])
        return self.norm(x)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Stage-1 tokens [B, h1*w1, D1] -> output tokens [B, 1 + h*w, D].

        With ``ids_keep`` [B, K] (indices into ``grid_size``): every other output patch is hidden by
        replacing its stage-1 tokens with the mask token, and the class token plus the kept output
        tokens are returned [B, 1 + K, D], in ``ids_keep`` order. BatchNorm running statistics are
        left to the unmasked passes.

        ConvMAE-style decoder, SimMIM-style encoder masking: masks are drawn on the 16-px output
        patches, as in ConvMAE. ConvMAE hides them from the conv stages with masked convolution and
        drops them from the transformer stage; CvT's conv projections need the full token map in
        every stage, so here the hidden stage-1 tokens are replaced by a learned mask token instead
        (as SimMIM does) and the encoder runs on every position. The decoder is ConvMAE's: the MAE
        decoder on the visible output tokens, which is why those are returned, like the ViT's visible pass.
        """
        if ids_keep is None:
            return self._encode(x)
        mask = mask_from_keep(ids_keep, self.grid_size[0] * self.grid_size[1])
        x = replace_tokens(x, upsample_mask(mask, self.grid_size, self.stage_grids[0]).flatten(1), self.mask_token)
        with frozen_bn_stats(self):
            x = self._encode(x)
        return torch.cat([x[:, :1], gather_tokens(x[:, 1:], ids_keep)], dim=1)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W] -> [B, 1 + h*w, D] (or [B, 1 + K, D] for ``ids_keep``)."""
        return self.forward_tokens(self.embed(x), ids_keep)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Output tokens [B, 1 + h*w, D] -> logits [B, num_classes] from the class token."""
        x = x[:, 0]
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def cvt_13(**kwargs) -> CvT:
    """CvT-13: dims (64, 192, 384), depths (1, 2, 10), heads (1, 3, 6); 19.98M params at 1000 classes."""
    return CvT(**kwargs)


@register_model
def cvt_test(**kwargs) -> CvT:
    """Tiny CvT for tests: 32 px (grids 8, 4, 2), dims (16, 32, 64), one block per stage."""
    return CvT(**{"img_size": 32, "dims": (16, 32, 64), "depths": (1, 1, 1), "num_heads": (1, 2, 4), **kwargs})
