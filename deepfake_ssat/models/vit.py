"""Image ViT: timm's ``VisionTransformer`` with an MAE encoder pass over visible patches only."""
from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from .masking import gather_tokens
from .registry import register_model


class ImageViT(VisionTransformer):
    """timm ViT whose ``forward_features`` optionally keeps only the patch tokens ``ids_keep``.

    Prefix tokens (class / register tokens) are always kept. ``img_size``, ``in_chans``,
    ``patch_size`` and ``grid_size`` are readable for data, patchify and decoder construction.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if self.patch_embed.patch_size[0] != self.patch_embed.patch_size[1]:
            raise ValueError(f"square patches only, got {self.patch_embed.patch_size}")
        self.img_size = self.patch_embed.img_size[0]
        self.in_chans = self.patch_embed.proj.in_channels
        self.patch_size = self.patch_embed.patch_size[0]
        self.grid_size = tuple(self.patch_embed.grid_size)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> prefix + patch tokens with positions [B, P + L, D]."""
        return self._pos_embed(self.patch_embed(x))

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded tokens [B, P + L, D] -> encoded [B, P + L, D], or [B, P + L_keep, D] for ``ids_keep``."""
        if ids_keep is not None:
            prefix, patches = x[:, :self.num_prefix_tokens], x[:, self.num_prefix_tokens:]
            x = torch.cat([prefix, gather_tokens(patches, ids_keep)], dim=1)  # [B, P + L_keep, D]
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, C, H, W] -> tokens [B, P + L, D], or [B, P + L_keep, D] for the visible ``ids_keep``."""
        return self.forward_tokens(self.embed(x), ids_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def vit_tiny_patch16_224(**kwargs) -> ImageViT:
    """ViT-Tiny (DeiT-Ti): embed 192, depth 12, 3 heads. Set ``img_size``/``patch_size`` for small images."""
    return ImageViT(**{"patch_size": 16, "embed_dim": 192, "depth": 12, "num_heads": 3, **kwargs})


@register_model
def vit_small_patch16_224(**kwargs) -> ImageViT:
    """ViT-Small (DeiT-S): embed 384, depth 12, 6 heads."""
    return ImageViT(**{"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, **kwargs})


@register_model
def vit_digits(**kwargs) -> ImageViT:
    """Small ViT for the bundled 32x32 digits: patch 4, embed 96, depth 4, 3 heads (CPU demo)."""
    return ImageViT(**{
        "img_size": 32, "patch_size": 4, "in_chans": 1, "num_classes": 10,
        "embed_dim": 96, "depth": 4, "num_heads": 3, **kwargs,
    })


@register_model
def vit_test(**kwargs) -> ImageViT:
    """Tiny image ViT for tests: 32 px, patch 8, width 64, depth 2."""
    return ImageViT(**{"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4, **kwargs})
