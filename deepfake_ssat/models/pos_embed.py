"""Fixed sin-cos position embeddings over 1D, 2D and 3D token grids (pure torch)."""
from __future__ import annotations

import torch


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sin-cos code of ``positions`` [N] -> [N, embed_dim] (``embed_dim`` even)."""
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dim, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000 ** omega  # [D/2]
    out = positions.to(torch.float64).reshape(-1, 1) * omega.reshape(1, -1)  # [N, D/2]
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1).float()  # [N, D]


def videomae_table(embed_dim: int, num_tokens: int) -> torch.Tensor:
    """VideoMAE's fixed table [num_tokens, embed_dim]: channel 2i = sin, 2i + 1 = cos of
    ``n / 10000^(2i / D)`` for flattened token index ``n`` (the layout its checkpoints were trained with)."""
    code = sincos_1d(embed_dim, torch.arange(num_tokens))  # [N, D]: sin half, cos half
    sin, cos = code.chunk(2, dim=1)  # [N, D/2] each
    return torch.stack([sin, cos], dim=2).reshape(num_tokens, embed_dim)  # [N, D] interleaved


def sincos_grid(embed_dim: int, grid_size: tuple[int, ...]) -> torch.Tensor:
    """Factorised sin-cos embedding for a token grid (t, h, w) / (h, w), row-major -> [prod(grid), D].

    The channel budget is split across axes in even chunks; the last axis takes the remainder.
    """
    ndim = len(grid_size)
    per_axis = (embed_dim // ndim) // 2 * 2
    dims = [per_axis] * (ndim - 1) + [embed_dim - per_axis * (ndim - 1)]
    coords = torch.meshgrid(*[torch.arange(s) for s in grid_size], indexing="ij")
    parts = [sincos_1d(d, c.reshape(-1)) for d, c in zip(dims, coords)]  # each [N, d]
    return torch.cat(parts, dim=1)  # [N, D]
