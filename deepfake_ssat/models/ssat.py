"""SSAT: an encoder trained jointly for classification and masked reconstruction of images / clips.

``L = lam * CE(head(f(x)), y) + (1 - lam) * MSE(g(f(M(x))), x)[masked]`` for ``x`` [B, C, H, W] or
[B, C, T, H, W]: the full-token pass feeds the classifier, the masked pass the decoder, whose prediction and
target are patches [B, L, patch_dim] (:func:`patchify`; clips may take VideoMAE's target instead:
:func:`videomae_target`). Contract and masking modes: :class:`SSAT`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from .encoder import Encoder
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


def videomae_target(x: torch.Tensor, patch_size: int, tubelet_size: int, norm_pix_loss: bool = True) -> torch.Tensor:
    """VideoMAE's reconstruction target: ImageNet-normalised RGB clips [B, 3, T, H, W] -> [B, L, ts*p*p*3].

    The clip is first put back into [0, 1] pixels (``x * std + mean``, ImageNet's per-channel values) and cut
    like :func:`patchify` (values ordered ``(ts, p, p, C)``, channel innermost). With ``norm_pix_loss`` each
    colour channel of each tubelet is standardised on its own over the tubelet's ts*p*p pixels,
    ``(v - mean) / (std + 1e-6)`` with the unbiased std and the epsilon outside the root (VideoMAE's rule);
    without it the target is the [0, 1] pixels. Compare :func:`ssat_loss`'s joint rule (one mean and variance
    over all ts*p*p*C values of the ImageNet-normalised patch, MAE's).
    """
    if x.ndim != 5 or x.shape[1] != 3:
        raise ValueError(f"VideoMAE's target un-normalises RGB clips [B, 3, T, H, W]; got shape {tuple(x.shape)}")
    mean = x.new_tensor(IMAGENET_DEFAULT_MEAN, dtype=torch.float32).view(1, 3, 1, 1, 1)
    std = x.new_tensor(IMAGENET_DEFAULT_STD, dtype=torch.float32).view(1, 3, 1, 1, 1)
    patches = patchify(x.float() * std + mean, patch_size, tubelet_size)  # [B, L, ts*p*p*3] in [0, 1]
    if not norm_pix_loss:
        return patches
    b, length, dim = patches.shape
    per_channel = patches.reshape(b, length, dim // 3, 3)  # [B, L, ts*p*p, 3]
    var, mean = torch.var_mean(per_channel, dim=2, keepdim=True)  # [B, L, 1, 3] each (unbiased var)
    return ((per_channel - mean) / (var.sqrt() + 1.0e-6)).reshape(b, length, dim)


VIDEO_TARGETS = ("joint", "videomae")  # SSAT(video_target=...): the clip reconstruction targets


def ssat_loss(
        out: SSATOutput,
        target: torch.Tensor,
        labels: torch.Tensor | None,
        lam: float,
        norm_pix_loss: bool = True,
        label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Joint loss. ``target`` is the patchified input [B, L, patch_dim].

    Returns the total and its parts (``cls``, ``rec``; detached) for logging. A weight of 1 is not multiplied in,
    and the total does not start from zero: under ``torch.compile`` inductor folds ``0 + 1.0 * cls`` into ``cls``
    itself, the tensor the detached part also is, and the returned total then has no gradient (scratch and pure
    reconstruction runs; pytorch/pytorch#194760). The values are the same either way.
    """
    parts: dict[str, torch.Tensor] = {}
    weighted = []  # each loss times its weight
    if out.logits is not None:
        cls = F.cross_entropy(out.logits.float(), labels, label_smoothing=label_smoothing)
        weighted.append(cls if lam == 1.0 else lam * cls)
        parts["cls"] = cls.detach()
    if out.pred is not None:
        target = target.float()
        if norm_pix_loss:
            var, mean = torch.var_mean(target, dim=-1, keepdim=True)  # [B, L, 1] each (unbiased var)
            target = (target - mean) * torch.rsqrt(var + 1.0e-6)
        per_token = ((out.pred.float() - target) ** 2).mean(dim=-1)  # [B, L]
        rec = (per_token * out.mask).sum() / out.mask.sum()
        weighted.append(rec if lam == 0.0 else (1.0 - lam) * rec)
        parts["rec"] = rec.detach()
    if not weighted:
        return target.new_zeros((), dtype=torch.float32), parts
    return (weighted[0] if len(weighted) == 1 else weighted[0] + weighted[1]), parts


class SSAT(nn.Module):
    """Encoder + classifier head (inside the encoder) + optional decoder (MAE or SimMIM).

    ``lam = 1`` (or no decoder) is the scratch baseline and never touches a decoder; ``lam = 0`` is pure
    MAE / VideoMAE pre-training and skips the classification pass. The masked pass depends on the
    encoder's ``masking`` (see :meth:`forward`).

    Training contract (shared with :class:`~deepfake_ssat.models.aux_tasks.SSATMultiView`, so the
    trainer never asks which wrapper it holds): ``training_step(batch) -> (loss, parts)``,
    ``eval_step(batch) -> (loss, parts, logits)``, ``after_update(progress)``, ``after_weights_loaded()``,
    ``num_views`` and ``find_unused_parameters``. Batches are ``(x, y, ...)`` as the datasets yield them.

    ``video_target`` picks the reconstruction target of clips: ``"joint"`` (default) is MAE's rule applied to a
    tubelet, :func:`patchify` of the ImageNet-normalised clip, standardised over all its values when
    ``norm_pix_loss`` (:func:`ssat_loss`); ``"videomae"`` is VideoMAE's (:func:`videomae_target`: [0, 1] pixels,
    each colour channel standardised on its own). Images always take MAE's target.
    """

    num_views = 1  # one augmented view per item

    def __init__(
            self,
            encoder: Encoder,
            decoder: nn.Module | None = None,
            mask_ratio: float = 0.75,
            lam: float = 0.1,
            norm_pix_loss: bool = True,
            label_smoothing: float = 0.0,
            video_target: str = "joint",
    ):
        super().__init__()
        _check_video_target(video_target, encoder)
        if decoder is None and lam != 1.0:
            raise ValueError(f"lam={lam} needs a decoder; without one SSAT is classification only (lam=1)")
        self.masking = encoder.masking
        if decoder is not None and self.masking is None:
            raise ValueError(f"{type(encoder).__name__} has no masked pass: train it without a decoder (lam=1)")
        self.encoder = encoder
        self.decoder = decoder
        self.mask_ratio = mask_ratio
        self.lam = lam
        self.norm_pix_loss = norm_pix_loss
        self.label_smoothing = label_smoothing
        self.video_target = video_target
        # DDP: with lam = 0 the head gets no gradient; without a masked pass neither does a mask token
        self.find_unused_parameters = lam == 0 or (decoder is None and hasattr(encoder, "mask_token"))

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        names = {f"encoder.{n}" for n in self.encoder.no_weight_decay()}
        if self.decoder is not None:
            names |= {f"decoder.{n}" for n in self.decoder.no_weight_decay()}
        return names

    def random_mask(self, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tube masking for video encoders (3D token grid), per-patch random masking for images."""
        grid = self.encoder.mask_grid_size
        if len(grid) == 3:
            return tube_masking(batch, grid, self.mask_ratio, device)
        return random_masking(batch, grid[0] * grid[1], self.mask_ratio, device)

    def forward(self, x: torch.Tensor) -> SSATOutput:
        """x [B, C, H, W] or [B, C, T, H, W] -> logits (full pass), prediction and mask (masked pass).

        The encoder (:class:`~deepfake_ssat.models.encoder.Encoder`)'s ``masking`` picks the masked pass:

        - ``"drop"`` (default; ViT, VideoMAE, CvT): ``forward_tokens(tokens, ids_keep)`` returns the
          visible tokens only and the MAE decoder fills in the rest from ``ids_restore``;
        - ``"replace"`` (Swin, SimMIM): ``forward_masked(tokens, mask)`` returns every token, the hidden
          ones having been replaced by a mask token, and the decoder reads them all. The mask is drawn on
          ``encoder.mask_grid_size`` and the target cut into ``encoder.mask_patch_size`` patches;
        - ``None`` (ResNet): no masked pass; only ``lam = 1`` without a decoder.
        """
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
        return patchify(x, self.encoder.mask_patch_size, self.encoder.tubelet_size)

    def loss(self, out: SSATOutput, x: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, dict]:
        """Joint loss of ``out`` for the input ``x`` (:func:`ssat_loss`, on the target ``video_target`` picks)."""
        if out.pred is None:
            return ssat_loss(out, x.new_zeros(()), labels, self.lam, self.norm_pix_loss, self.label_smoothing)
        if self.video_target == "videomae":  # a clip (checked at construction), standardised per channel already
            target = videomae_target(x, self.encoder.mask_patch_size, self.encoder.tubelet_size, self.norm_pix_loss)
            return ssat_loss(out, target, labels, self.lam, False, self.label_smoothing)
        return ssat_loss(out, self.patchify(x), labels, self.lam, self.norm_pix_loss, self.label_smoothing)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: full pass only -> logits [B, num_classes]. The decoder is never used."""
        return self.encoder(x)

    # ----------------------------------------------------------------------- training contract

    def training_step(self, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(x, y, ...)`` -> (joint loss, its parts ``cls`` / ``rec``, detached). ``y`` may be soft (Mixup)."""
        x, y = batch[0], batch[1]
        return self.loss(self(x), x, y)

    def eval_step(self, batch: tuple) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """:meth:`training_step` plus the logits (None for lam = 0) for accuracy."""
        x, y = batch[0], batch[1]
        out = self(x)
        loss, parts = self.loss(out, x, y)
        return loss, parts, out.logits

    def after_update(self, progress: float) -> None:
        """Called after every optimizer update (``progress``: fraction of updates done before it): nothing to do."""

    def after_weights_loaded(self) -> None:
        """Called after pre-trained weights were loaded into the encoder: nothing derives from them."""

    def describe(self) -> str:
        return f"decoder={'yes' if self.decoder is not None else 'no'}"


def _check_video_target(video_target: str, encoder: Encoder) -> None:
    """One-line ``ValueError`` for a ``video_target`` that is unknown or cannot apply to ``encoder``."""
    if video_target not in VIDEO_TARGETS:
        raise ValueError(f"video_target must be one of {', '.join(VIDEO_TARGETS)}, got {video_target!r}")
    if video_target == "videomae" and (encoder.num_frames is None or encoder.in_chans != 3):
        kind = "an image model" if encoder.num_frames is None else f"a {encoder.in_chans}-channel model"
        raise ValueError(f"video_target 'videomae' is VideoMAE's target for RGB clips; {type(encoder).__name__} is "
                         f"{kind} (use 'joint')")
