"""SSAT: an encoder trained jointly for classification and masked reconstruction.

``L = lam * CE(head(f(x)), y) + (1 - lam) * MSE(g(f(M(x))), x)[masked]``

The full-token pass feeds the classifier; the masked pass feeds the decoder. ``lam = 1``
(or no decoder) is the scratch baseline and never touches a decoder; ``lam = 0`` is pure MAE /
VideoMAE pre-training and skips the classification pass.

The encoder's ``masking`` attribute picks the masked pass:

- ``"drop"`` (default; ViT, VideoMAE, CvT): ``forward_tokens(tokens, ids_keep)`` returns the
  visible tokens only and the MAE decoder fills in the rest from ``ids_restore``;
- ``"replace"`` (Swin, SimMIM): ``forward_masked(tokens, mask)`` returns every token, the hidden
  ones having been replaced by a mask token, and the decoder reads them all. The mask is drawn on
  ``encoder.mask_grid_size`` and the target cut into ``encoder.mask_patch_size`` patches;
- ``None`` (ResNet): no masked pass; only ``lam = 1`` without a decoder.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masking import random_masking, tube_masking


@dataclass
class SSATOutput:
    logits: torch.Tensor | None  # [B, num_classes]; None when lam == 0
    pred: torch.Tensor | None  # [B, L, patch_dim]; None without a decoder
    mask: torch.Tensor | None  # [B, L], 1 = removed; None without a decoder


def patchify(x: torch.Tensor, patch_size: int, tubelet_size: int | None = None) -> torch.Tensor:
    """Images [B, C, H, W] -> [B, h*w, p*p*C]; clips [B, C, T, H, W] -> [B, t*h*w, ts*p*p*C].

    Token order matches the patch embeds (time outermost, then rows, then columns).
    """
    p = patch_size
    if x.ndim == 4:
        b, c, hh, ww = x.shape
        h, w = hh // p, ww // p
        x = x.reshape(b, c, h, p, w, p)  # [B, C, h, p, w, p]
        x = x.permute(0, 2, 4, 3, 5, 1)  # [B, h, w, p, p, C]
        return x.reshape(b, h * w, p * p * c)
    b, c, tt, hh, ww = x.shape
    ts = tubelet_size or 1
    t, h, w = tt // ts, hh // p, ww // p
    x = x.reshape(b, c, t, ts, h, p, w, p)  # [B, C, t, ts, h, p, w, p]
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # [B, t, h, w, ts, p, p, C]
    return x.reshape(b, t * h * w, ts * p * p * c)


def ssat_loss(
        out: SSATOutput,
        target: torch.Tensor,
        labels: torch.Tensor | None,
        lam: float,
        norm_pix_loss: bool = True,
        label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Joint loss. ``target`` is the patchified input [B, L, patch_dim].

    Returns the total and its parts (``cls``, ``rec``; detached) for logging.
    """
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=target.device)
    if out.logits is not None:
        cls = F.cross_entropy(out.logits.float(), labels, label_smoothing=label_smoothing)
        total = total + lam * cls
        parts["cls"] = cls.detach()
    if out.pred is not None:
        target = target.float()
        if norm_pix_loss:
            var, mean = torch.var_mean(target, dim=-1, keepdim=True)  # [B, L, 1] each (unbiased var)
            target = (target - mean) * torch.rsqrt(var + 1.0e-6)
        per_token = ((out.pred.float() - target) ** 2).mean(dim=-1)  # [B, L]
        rec = (per_token * out.mask).sum() / out.mask.sum()
        total = total + (1.0 - lam) * rec
        parts["rec"] = rec.detach()
    return total, parts


class SSAT(nn.Module):
    """Encoder + classifier head (inside the encoder) + optional decoder (MAE or SimMIM)."""

    def __init__(
            self,
            encoder: nn.Module,
            decoder: nn.Module | None = None,
            mask_ratio: float = 0.75,
            lam: float = 0.1,
            norm_pix_loss: bool = True,
            label_smoothing: float = 0.0,
    ):
        super().__init__()
        if decoder is None and lam != 1.0:
            raise ValueError(f"lam={lam} needs a decoder; without one SSAT is classification only (lam=1)")
        self.masking = getattr(encoder, "masking", "drop")
        if decoder is not None and self.masking is None:
            raise ValueError(f"{type(encoder).__name__} has no masked pass: train it without a decoder (lam=1)")
        self.encoder = encoder
        self.decoder = decoder
        self.mask_ratio = mask_ratio
        self.lam = lam
        self.norm_pix_loss = norm_pix_loss
        self.label_smoothing = label_smoothing

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        if self.decoder is not None:
            names |= {f"decoder.{n}" for n in self.decoder.no_weight_decay()}
        return names

    def random_mask(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tube masking for video encoders (3D token grid), per-patch random masking for images."""
        grid = getattr(self.encoder, "mask_grid_size", self.encoder.grid_size)
        if len(grid) == 3:
            return tube_masking(batch, grid, self.mask_ratio, device)
        return random_masking(batch, grid[0] * grid[1], self.mask_ratio, device)

    def forward(self, x: torch.Tensor) -> SSATOutput:
        """x [B, C, H, W] or [B, C, T, H, W] -> logits (full pass), prediction and mask (masked pass)."""
        tokens = self.encoder.embed(x)  # ViT: [B, P + L, D]; first-stage map for the others; shared by both passes
        logits = None
        if self.lam > 0:
            logits = self.encoder.forward_head(self.encoder.forward_tokens(tokens))
        if self.decoder is None:
            return SSATOutput(logits, None, None)
        ids_keep, mask, ids_restore = self.random_mask(x.shape[0], x.device)
        if self.masking == "replace":
            latent = self.encoder.forward_masked(tokens, mask)  # [B, L_out, D], every output token
            pred = self.decoder(latent)  # [B, L, patch_dim]
        else:
            latent = self.encoder.forward_tokens(tokens, ids_keep)  # [B, P + L_keep, D]
            pred = self.decoder(latent, ids_restore)  # [B, L, patch_dim]
        return SSATOutput(logits, pred, mask)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction target [B, L, patch_dim], cut like the mask."""
        patch_size = getattr(self.encoder, "mask_patch_size", self.encoder.patch_size)
        return patchify(x, patch_size, getattr(self.encoder, "tubelet_size", None))

    def loss(self, out: SSATOutput, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        target = self.patchify(x) if out.pred is not None else x.new_zeros(())
        return ssat_loss(out, target, labels, self.lam, self.norm_pix_loss, self.label_smoothing)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: full pass only -> logits [B, num_classes]. The decoder is never used."""
        return self.encoder(x)
