"""Token probes for the paper's §5.2 diagnostics: attention distribution, inter-token distance,
feature-map variance and last-block attention maps, on plain ViT / VideoMAE encoders.

Block outputs are tokens [B, N, D], attention probabilities [B, H, N, N]; attention is recomputed explicitly
by hooks that exist only inside :func:`capture`, so the model's outputs and training path are unchanged.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn as nn
from timm.models.vision_transformer import Attention


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout / drop-path) for the duration, then the module's previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def require_plain_vit(encoder: nn.Module) -> None:
    """Raise ValueError unless ``encoder`` is an isotropic ViT (ImageViT / VideoViT): ``blocks`` of
    timm blocks with timm ``Attention`` over one token grid. The probes and Grad-CAM need that."""
    blocks = getattr(encoder, "blocks", None)
    if blocks is None or not all(isinstance(getattr(b, "attn", None), Attention) for b in blocks):
        raise ValueError(f"{type(encoder).__name__} is not a plain ViT (blocks of timm Attention over one "
                         f"token grid); these analyses support ViT / VideoMAE encoders")


PAPER_MIDDLE_BLOCK = 5  # Fig. 6: the first, sixth and twelfth ViT-T blocks


def default_blocks(depth: int) -> list[int]:
    """First, middle and last block indices (deduplicated, ascending) for a ``depth``-block encoder.

    The middle one is the paper's (Fig. 6): the sixth block, index 5, of encoders with at least 6
    blocks (12-block ViT-T/S/B: 0, 5, 11); ``depth // 2`` of shallower ones."""
    middle = PAPER_MIDDLE_BLOCK if depth > PAPER_MIDDLE_BLOCK else depth // 2
    return sorted({0, middle, depth - 1})


def resolve_blocks(spec: list[int] | None, depth: int) -> list[int]:
    """Block indices (negative counts from the end) -> sorted unique non-negative ones; None = default."""
    if spec is None:
        return default_blocks(depth)
    out = set()
    for i in spec:
        if not -depth <= i < depth:
            raise ValueError(f"block {i} out of range for an encoder of depth {depth}")
        out.add(i % depth)
    return sorted(out)


def explicit_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention probabilities of a timm ``Attention`` for its input ``x`` [B, N, C] -> [B, H, N, N]."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, H, N, head_dim]
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    return ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


@dataclass
class Capture:
    """What one probed forward pass saw.

    ``tokens[i]``: output of block ``i`` [B, N, D] (every block); ``attention[i]``: attention
    probabilities of block ``i`` [B, H, N, N] (the requested blocks only); ``logits`` [B, K].
    """
    tokens: list[torch.Tensor] = field(default_factory=list)
    attention: dict[int, torch.Tensor] = field(default_factory=dict)
    logits: torch.Tensor | None = None


@torch.no_grad()
def capture(encoder: nn.Module, x: torch.Tensor, attention_blocks: list[int] = ()) -> Capture:
    """Run ``encoder`` (eval mode) on ``x`` and record every block's output tokens and the
    attention of ``attention_blocks``. Hooks are removed before returning.

    The model keeps its fused SDPA kernel and its outputs are unchanged: the hooks recompute attention
    explicitly. Each hooked block costs one extra ``qkv`` projection and one ``[B, H, N, N]`` softmax;
    for ViT-B/16 at 224 px (N = 197, D = 768, 12 heads) that is ~0.8 GFLOPs and ~1.9 MB of fp32
    attention per image and hooked block, against ~35 GFLOPs for the whole forward pass (estimates
    from the shapes, not measured).
    """
    result = Capture()
    handles = []
    for i, blk in enumerate(encoder.blocks):
        handles.append(blk.register_forward_hook(lambda _m, _a, out: result.tokens.append(out)))
        if i in attention_blocks:
            def keep(module: nn.Module, args: tuple, _out: torch.Tensor, i: int = i) -> None:
                result.attention[i] = explicit_attention(module, args[0])
            handles.append(blk.attn.register_forward_hook(keep))
    try:
        with evaluating(encoder):
            result.logits = encoder(x)
    finally:
        for h in handles:
            h.remove()
    return result


def attention_distribution(attn: torch.Tensor) -> torch.Tensor:
    """Column sums of ``attn`` [B, H, N, N] averaged over heads and samples, sorted descending -> [N].

    Each row of ``attn`` sums to 1, so the result sums to N: a flat profile means every token
    is attended equally, a steep one that a few tokens collect the attention.
    """
    col = attn.sum(dim=-2)  # [B, H, N]: attention received by each key token
    return col.mean(dim=(0, 1)).sort(descending=True).values


def inter_token_distance(tokens: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Euclidean distance between distinct tokens of each sample: [B, N, D] -> [B].

    Cost ~3 N^2 D per image and block (~0.1 GFLOPs for ViT-B/16 at 224 px)."""
    n = tokens.shape[1]
    dist = torch.cdist(tokens, tokens, compute_mode="donot_use_mm_for_euclid_dist")  # [B, N, N]
    return dist.sum(dim=(1, 2)) / (n * (n - 1))  # the diagonal is zero


def feature_variance(tokens: torch.Tensor) -> torch.Tensor:
    """Variance of the feature map over tokens, per channel, averaged over channels: [B, N, D] -> [B].

    The token analogue of a CNN feature map's spatial variance (the paper's Fig. 8).
    """
    return tokens.var(dim=1, unbiased=False).mean(dim=-1)


def attention_map(encoder: nn.Module, attn: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Last-block attention over the patch grid from ``attn`` [B, H, N, N].

    With a class token: the class token's attention to the patches, averaged over heads;
    without: the attention each patch receives, averaged over queries and heads (mean-token).
    Returns ``(map [B, *grid_size], kind)`` with kind ``"cls"`` or ``"mean-token"``.
    """
    p = encoder.num_prefix_tokens
    a = attn.mean(dim=1)  # [B, N, N]
    if p > 0:
        patches, kind = a[:, 0, p:], "cls"  # [B, L]
    else:
        patches, kind = a.mean(dim=1), "mean-token"  # [B, L]
    return patches.reshape(a.shape[0], *encoder.grid_size), kind  # [B, (t,) h, w]
