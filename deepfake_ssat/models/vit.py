"""Image ViT: timm's ``VisionTransformer`` with an MAE encoder pass over visible patches only."""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as timm_checkpoint_filter_fn

from .encoder import EncoderDefaults
from .masking import gather_tokens
from .registry import register_model


class ImageViT(EncoderDefaults, VisionTransformer):
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
        self.mask_grid_size, self.mask_patch_size = self.grid_size, self.patch_size

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


def fit_to_model(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop ``head.*`` when it does not fit ``model`` (other ``num_classes``, or no head); raise a
    one-line ``ValueError`` naming the key and both shapes for any other tensor that does not fit.

    Keys absent from ``model`` are kept (``load_state_dict(strict=False)`` reports them as unexpected).
    """
    target = model.state_dict()
    head_fits = all(
        k in target and v.shape == target[k].shape for k, v in state_dict.items() if k.startswith("head."))
    out = {}
    for k, v in state_dict.items():
        if k.startswith("head.") and not head_fits:
            continue
        if k in target and v.shape != target[k].shape:
            raise ValueError(
                f"{k}: checkpoint shape {tuple(v.shape)} does not fit model shape {tuple(target[k].shape)}")
        out[k] = v
    return out


def mae_key(key: str) -> str | None:
    """Our key for a facebookresearch/mae (or timm) image-ViT key; None for MAE decoder entries.

    Decoder entries: ``decoder_embed``/``decoder_blocks``/``decoder_norm``/``decoder_pred``/
    ``decoder_pos_embed`` and ``mask_token``. A ``module.`` (DDP) prefix is stripped.
    """
    key = key.removeprefix("module.")
    return None if key.startswith("decoder") or key == "mask_token" else key


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: ImageViT) -> dict[str, torch.Tensor]:
    """MAE pre-training / fine-tuned (or timm) image ViT state dict -> ``model``'s keys (pure, no I/O).

    Drops the MAE decoder and ``mask_token`` (see :func:`mae_key`; this also keeps timm off its
    DINOv2 path, which keys on ``mask_token``), then defers to timm's ``checkpoint_filter_fn``, which
    resamples ``pos_embed`` [1, 1 + L, D] to the model's grid and ``patch_embed.proj.weight`` to its
    patch size. ``head.*`` is dropped when its shape differs; any other misfit raises ``ValueError``.
    """
    encoder_only = {new: v for k, v in state_dict.items() if (new := mae_key(k)) is not None}
    return fit_to_model(timm_checkpoint_filter_fn(encoder_only, model), model)


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
