"""The encoder contract: what SSAT, the decoders and the engine may ask of an encoder.

Every registered encoder (ViT, VideoMAE ViT, Swin, CvT, ResNet) sets each attribute below itself;
:class:`EncoderDefaults` holds the values most of them share. Tokens are ``[B, P + L, D]`` (``P``
prefix tokens, ``L`` patch / tubelet tokens on ``grid_size``); masks are drawn on ``mask_grid_size``.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Encoder(Protocol):
    masking: str | None  # "drop" (visible tokens only), "replace" (mask token, SimMIM) or None (no masked pass)
    img_size: int
    in_chans: int
    num_frames: int | None  # clip length for video encoders, None for images
    patch_size: int  # total stride of one output token, in pixels
    tubelet_size: int  # frames per token (1 for images)
    grid_size: tuple[int, ...]  # output token grid: (h, w) or (t, h, w)
    mask_grid_size: tuple[int, ...]  # grid the masks are drawn on (Swin: finer than grid_size)
    mask_patch_size: int  # pixels per mask cell: the reconstruction target is cut this size
    num_features: int
    num_classes: int
    num_prefix_tokens: int

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input [B, C, (T,) H, W] -> first tokens / feature map, shared by the full and the masked pass."""

    def forward_tokens(self, x: torch.Tensor, ids_keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embedded tokens -> output tokens; with ``ids_keep`` [B, L_keep] only those are kept ("drop")."""

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Embedded tokens + mask [B, L_mask] (1 = hidden) -> every output token ("replace" encoders)."""

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Output tokens -> logits [B, num_classes] (pooled features with ``pre_logits``)."""

    def no_weight_decay(self) -> set[str]:
        """Parameter names kept out of weight decay (position tables, class / mask tokens)."""


class EncoderDefaults:
    """Class-level defaults of the contract: a "drop"-masking image encoder without prefix tokens."""
    masking: str | None = "drop"
    num_frames: int | None = None
    tubelet_size: int = 1
    num_prefix_tokens: int = 0

    def forward_masked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} masks by dropping tokens (masking={self.masking!r}); "
                                  f"use forward_tokens(x, ids_keep)")
