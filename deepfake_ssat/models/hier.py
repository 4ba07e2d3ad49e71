"""Masking by replacement, shared by the hierarchical / convolutional encoders (Swin, CvT, ResNet).

Their stages convolve, merge or window the full token map, so hidden tokens cannot be dropped as
in a ViT. Instead (SimMIM) the hidden tokens of the first-stage map are replaced by a mask token
and the encoder runs on every position. Masks are drawn on a coarse grid (the mask patches) and
repeated onto the first-stage grid.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn


def mask_from_keep(ids_keep: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Visible ids [B, K] -> mask [B, num_tokens] (float, 1 = hidden)."""
    mask = torch.ones(ids_keep.shape[0], num_tokens, device=ids_keep.device)
    return mask.scatter(1, ids_keep, 0.0)


def upsample_mask(mask: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Mask [B, h*w] on ``grid`` (h, w) -> [B, H, W] on the finer ``target`` grid.

    Every coarse cell becomes an (H/h) x (W/w) block of the same value.
    """
    (h, w), (hh, ww) = grid, target
    if hh % h or ww % w:
        raise ValueError(f"mask grid {grid} does not divide the token grid {target}")
    mask = mask.reshape(-1, h, w)  # [B, h, w]
    return mask.repeat_interleave(hh // h, dim=1).repeat_interleave(ww // w, dim=2)  # [B, H, W]


def replace_tokens(x: torch.Tensor, mask: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """Tokens ``x`` [B, ..., D] with the positions where ``mask`` [B, ...] is 1 set to ``token`` [D]."""
    return torch.where(mask.unsqueeze(-1).bool(), token.to(x.dtype), x)


@contextmanager
def frozen_bn_stats(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers in ``module`` normalise with batch statistics but keep their running ones.

    For the masked pass: running statistics must describe the unmasked inputs that inference sees.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
