"""Swin Transformer (timm) with SimMIM masking, and the SimMIM decoder.

SimMIM (Xie et al. 2022): the hidden patch tokens are replaced by a learned mask token right after
the patch embedding, the encoder runs on every token, and a linear head at the last stage
(1x1 conv to ``stride**2 * C`` channels + PixelShuffle) predicts the pixels. Masks are drawn on
``mask_patch_size`` patches (32 px for Swin-T at 224) and repeated onto the 4-px patch grid.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformer

from .encoder import EncoderDefaults
from .hier import mask_from_keep, replace_tokens, upsample_mask
from .masking import gather_tokens
from .registry import register_model
from .ssat import patchify


class SwinEncoder(EncoderDefaults, SwinTransformer):
    """timm Swin with a SimMIM masked pass.

    As for the ViTs, ``patch_size`` / ``grid_size`` describe the output tokens: the final stride
    (32 for Swin-T) and the last stage's grid; the stem's patch is ``patch_embed.patch_size``.
    ``mask_patch_size`` / ``mask_grid_size`` are the SSAT mask and reconstruction unit.
    ``masking = "replace"``: SSAT calls :meth:`forward_masked`, whose output keeps every token.
    """

    masking = "replace"

    def __init__(
            self,
            mask_patch_size: int | None = None,
            **kwargs,
    ):
        """``mask_patch_size``: pixels per mask patch, a multiple of the stem patch; None = final stride.
        Other keyword arguments go to timm's ``SwinTransformer``."""
        super().__init__(**kwargs)
        stem = self.patch_embed.patch_size[0]
        self.img_size = self.patch_embed.img_size[0]
        self.embed_grid = tuple(self.patch_embed.grid_size)
        self.patch_size = stem * 2 ** (self.num_layers - 1)
        self.mask_patch_size = mask_patch_size or self.patch_size
        for name, size in (("final stride", self.patch_size), ("mask_patch_size", self.mask_patch_size)):
            if size % stem or self.img_size % size:
                raise ValueError(f"img_size {self.img_size} must be a multiple of the {name} {size}, "
                                 f"itself a multiple of the patch size {stem}")
        self.grid_size = (self.img_size // self.patch_size,) * 2
        self.mask_grid_size = (self.img_size // self.mask_patch_size,) * 2
        self.num_prefix_tokens = 0
        self.mask_token = nn.Parameter(torch.zeros(self.embed_dim))
        trunc_normal_(self.mask_token, std=0.02)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"mask_token"}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> patch tokens [B, H/p, W/p, D0] (NHWC, as timm's stages take them)."""
        return self.patch_embed(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens [B, H/p, W/p, D0] -> output tokens [B, h*w, D]."""
        x = self.norm(self.layers(x))  # [B, h, w, D]
        return x.flatten(1, 2)

    def _encode_replaced(self, x: torch.Tensor, mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Patch tokens [B, H/p, W/p, D0], mask [B, prod(grid)] (1 = hidden) -> output tokens [B, h*w, D]."""
        return self._encode(replace_tokens(x, upsample_mask(mask, grid, self.embed_grid), self.mask_token))

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Patch tokens [B, H/p, W/p, D0], mask [B, L_mask] on ``mask_grid_size`` -> every output token [B, h*w, D]."""
        return self._encode_replaced(x, mask, self.mask_grid_size)

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Patch tokens [B, H/p, W/p, D0] -> [B, h*w, D]; with ``ids_keep`` [B, K] over ``grid_size``
        the other output patches are masked and only the kept tokens are returned [B, K, D]."""
        if ids_keep is None:
            return self._encode(x)
        mask = mask_from_keep(ids_keep, self.grid_size[0] * self.grid_size[1])
        return gather_tokens(self._encode_replaced(x, mask, self.grid_size), ids_keep)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W] -> output tokens [B, h*w, D] (or [B, K, D] for ``ids_keep``)."""
        return self.forward_tokens(self.embed(x), ids_keep)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Output tokens [B, h*w, D] -> logits [B, num_classes] (average pool)."""
        return super().forward_head(x.unflatten(1, self.grid_size), pre_logits)  # [B, h, w, D] in


class SimMIMDecoder(nn.Module):
    """Every output token -> pixels of every mask patch (SimMIM's linear decoder).

    1x1 conv to ``stride**2 * out_chans`` channels + PixelShuffle(stride) gives the full image,
    which is cut into ``mask_patch_size`` patches so the result lines up with the SSAT mask.
    """

    def __init__(
            self,
            in_dim: int,
            grid_size: tuple[int, int],
            stride: int,
            mask_patch_size: int,
            out_chans: int = 3,
    ):
        super().__init__()
        self.grid_size = grid_size
        self.mask_patch_size = mask_patch_size
        self.conv = nn.Conv2d(in_dim, stride ** 2 * out_chans, kernel_size=1)
        self.shuffle = nn.PixelShuffle(stride)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, h*w, D] -> prediction [B, L_mask, mask_patch_size**2 * out_chans]."""
        x = x.transpose(1, 2).unflatten(2, self.grid_size)  # [B, D, h, w]
        image = self.shuffle(self.conv(x))  # [B, C, h * stride, w * stride]
        return patchify(image, self.mask_patch_size)


@register_model
def swin_tiny_patch4_window7_224(**kwargs) -> SwinEncoder:
    """Swin-T: patch 4, window 7, width 96, depths (2, 2, 6, 2), heads (3, 6, 12, 24); ~28.3M params."""
    return SwinEncoder(**{
        "patch_size": 4, "window_size": 7, "embed_dim": 96, "depths": (2, 2, 6, 2), "num_heads": (3, 6, 12, 24),
        **kwargs,
    })


@register_model
def swin_test(**kwargs) -> SwinEncoder:
    """Tiny Swin for tests: 32 px, patch 4, window 4, widths 32/64, depths (2, 2) (shifted windows in stage 1)."""
    return SwinEncoder(**{
        "img_size": 32, "patch_size": 4, "window_size": 4, "embed_dim": 32, "depths": (2, 2), "num_heads": (2, 4),
        **kwargs,
    })
