"""Token masking for MAE-style auxiliary tasks: pure torch, on the tokens' device.

Every function returns ``(ids_keep [B, L_keep], mask [B, L], ids_restore [B, L])`` in the MAE convention
(mask 1 = removed, 0 = visible; details: :func:`random_masking`).
"""
from __future__ import annotations

import torch


def _from_shuffle(ids_shuffle: torch.Tensor, num_keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Build (ids_keep, mask, ids_restore) from a per-sample permutation ``ids_shuffle`` [B, L]."""
    batch, length = ids_shuffle.shape
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :num_keep]
    mask = torch.ones(batch, length, device=ids_shuffle.device)
    mask[:, :num_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # back to original token order
    return ids_keep, mask, ids_restore


def random_masking(
        batch: int,
        num_tokens: int,
        mask_ratio: float,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample random masking (MAE): keep ``int(L * (1 - mask_ratio))`` tokens per sample.

    Returns ``(ids_keep, mask, ids_restore)`` in the MAE convention (as every function here):

    - ``ids_keep``    [B, L_keep] indices of the visible tokens, in shuffled order;
    - ``mask``        [B, L] float, 1 = removed (to reconstruct), 0 = visible, in original order;
    - ``ids_restore`` [B, L] argsort of the shuffle: gathering ``cat(visible, mask_tokens)`` with it
      puts every token back in its original place.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    num_keep = int(num_tokens * (1 - mask_ratio))
    if num_keep < 1:
        raise ValueError(f"mask_ratio {mask_ratio} leaves no visible token out of {num_tokens}")
    noise = torch.rand(batch, num_tokens, device=device, generator=generator)  # [B, L]
    return _from_shuffle(torch.argsort(noise, dim=1), num_keep)


def tube_masking(
        batch: int,
        grid_size: tuple[int, int, int],
        mask_ratio: float,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tube masking (VideoMAE): one spatial mask per clip, repeated over every temporal slice.

    Tokens are ordered (t, h, w) with t outermost, as the video patch embed emits them.
    Exactly ``int(H * W * mask_ratio)`` tokens are masked in every temporal slice. Returns
    ``(ids_keep, mask, ids_restore)`` as :func:`random_masking`.
    """
    if not 0.0 <= mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    t, h, w = grid_size
    hw = h * w
    num_keep_hw = hw - int(hw * mask_ratio)  # >= 1 for any ratio < 1
    noise = torch.rand(batch, hw, device=device, generator=generator)  # [B, HW]
    ids_shuffle_hw = torch.argsort(noise, dim=1)  # [B, HW]
    offsets = torch.arange(t, device=ids_shuffle_hw.device).view(1, t, 1) * hw  # [1, T, 1]
    keep = ids_shuffle_hw[:, None, :num_keep_hw] + offsets  # [B, T, HW_keep]
    drop = ids_shuffle_hw[:, None, num_keep_hw:] + offsets  # [B, T, HW - HW_keep]
    ids_shuffle = torch.cat([keep.flatten(1), drop.flatten(1)], dim=1)  # [B, T*HW]
    return _from_shuffle(ids_shuffle, t * num_keep_hw)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Select tokens ``x`` [B, L, D] at ``ids`` [B, K] -> [B, K, D]."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
