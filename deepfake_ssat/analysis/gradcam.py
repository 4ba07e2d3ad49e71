"""Grad-CAM over ViT patch tokens (images) and spatio-temporal tubelet tokens (video), the paper's Fig. 10.

Input ``x`` [B, C, H, W] or [B, C, T, H, W]; the map lives on the token grid [B, h, w] / [B, t, h, w]
(:func:`grad_cam`) and is upsampled to pixels / frames for display (:func:`upsample_map`).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .probes import evaluating


def grad_cam(encoder: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None,
             layer: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of ``encoder`` on ``x`` [B, C, H, W] or [B, C, T, H, W].

    ``target`` [B] are the classes to explain (default: the predicted ones). Returns
    ``(cam [B, *grid_size], target [B])``; ``cam`` is non-negative, on the token grid
    (``(h, w)`` or ``(t, h, w)``), not normalised.

    The activations are the tokens entering block ``layer`` (default the last; the same tensor as
    pytorch-grad-cam's ``blocks[-1].norm1`` input): after the last block a class-token model's
    patch tokens no longer reach the head, so their gradients would be zero. Channel weights are the
    gradients of the target logit averaged over patch tokens; the map is ``ReLU(sum_c w_c A_c)``.
    Cost: one forward and one backward pass per batch (for ViT-B/16 at 224 px ~0.1 TFLOPs per image,
    an estimate from FLOPs).
    """
    acts: list[torch.Tensor] = []
    handle = encoder.blocks[layer].register_forward_pre_hook(lambda _m, args: acts.append(args[0]))
    try:
        with evaluating(encoder), torch.enable_grad():
            logits = encoder(x)  # [B, K]
            if target is None:
                target = logits.argmax(dim=1)
            score = logits.gather(1, target[:, None]).sum()
            (grads,) = torch.autograd.grad(score, acts[0])  # [B, P + L, D]
    finally:
        handle.remove()
    p = encoder.num_prefix_tokens
    a, g = acts[0][:, p:].detach(), grads[:, p:]  # patch tokens [B, L, D]
    weights = g.mean(dim=1, keepdim=True)  # [B, 1, D]
    cam = F.relu((weights * a).sum(dim=-1))  # [B, L]
    return cam.reshape(x.shape[0], *encoder.grid_size), target  # [B, (t,) h, w]


def upsample_map(token_map: torch.Tensor, encoder: nn.Module) -> torch.Tensor:
    """Token-grid map [B, h, w] or [B, t, h, w] -> pixels [B, H, W] or [B, T, H, W] (bilinear /
    trilinear), each sample min-max scaled to [0, 1]."""
    size = (encoder.img_size, encoder.img_size)
    if token_map.ndim == 4:
        size = (token_map.shape[1] * encoder.tubelet_size, *size)
    mode = "bilinear" if token_map.ndim == 3 else "trilinear"
    up = F.interpolate(token_map[:, None].float(), size=size, mode=mode, align_corners=False)[:, 0]
    flat = up.flatten(1)  # [B, pixels]
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values
    scale = (hi - lo).clamp_min(1e-12)
    return (up - lo.view(-1, *[1] * (up.ndim - 1))) / scale.view(-1, *[1] * (up.ndim - 1))
