"""MAE reconstructions of an SSAT model for figures: input, masked input and the decoder's prediction.

All in pixel space, in the input's shape [B, C, (T,) H, W] (:class:`Reconstruction`); patches [B, L, patch_dim]
are cut like the mask and put back by :func:`unpatchify`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..models import SSAT, SSATOutput, videomae_target
from .probes import evaluating


def unpatchify(patches: torch.Tensor, patch_size: int, grid: tuple[int, ...], in_chans: int,
               tubelet_size: int = 1) -> torch.Tensor:
    """Inverse of :func:`~deepfake_ssat.models.patchify`: [B, L, patch_dim] -> [B, C, H, W] for a
    2-D ``grid`` (h, w) or [B, C, T, H, W] for a 3-D one (t, h, w)."""
    b, p, c = patches.shape[0], patch_size, in_chans
    if len(grid) == 2:
        h, w = grid
        x = patches.reshape(b, h, w, p, p, c)  # [B, h, w, p, p, C]
        return x.permute(0, 5, 1, 3, 2, 4).reshape(b, c, h * p, w * p)
    t, h, w = grid
    ts = tubelet_size
    x = patches.reshape(b, t, h, w, ts, p, p, c)  # [B, t, h, w, ts, p, p, C]
    return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, t * ts, h * p, w * p)


@dataclass
class Reconstruction:
    """Pixel-space tensors in the input's shape [B, C, (T,) H, W] and the masked-patch loss.

    ``removed``: True where the patch was masked out; ``prediction``: the decoder's output as it
    is (per-patch standardised when ``standardised``); ``with_true_stats``: the prediction with each
    patch's true mean/std re-added (None without ``norm_pix_loss``; per tubelet channel, in [0, 1] pixels, for
    ``video_target: videomae``), normalised like the input; ``loss``: the masked-patch MSE in the loss's own
    target space.

    The prediction is shown as the decoder emits it: with ``norm_pix_loss`` the decoder predicts each
    patch standardised (zero mean, unit variance per patch), so the honest picture is the standardised
    one. The VideoMAE-style picture (``with_true_stats``) re-adds every patch's true mean and standard
    deviation, taken from the hidden pixels, and must be labelled as such.
    """
    removed: torch.Tensor
    prediction: torch.Tensor
    with_true_stats: torch.Tensor | None
    standardised: bool
    loss: float


@torch.no_grad()
def reconstruct(model: SSAT, x: torch.Tensor, seed: int = 0) -> Reconstruction:
    """Run ``model`` (in eval mode, mask drawn from ``seed``) on ``x`` [B, C, (T,) H, W].

    Cost: one SSAT forward (full pass + visible-token pass + decoder): for ViT-B/16 at 224 px
    ~45 GFLOPs per image (an estimate from FLOPs)."""
    if model.decoder is None:
        raise ValueError("no MAE decoder in this checkpoint (scratch or stripped); reconstructions need one")
    with evaluating(model), torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        out = model(x)
    enc = model.encoder
    _, parts = model.loss(SSATOutput(None, out.pred, out.mask), x, None)  # in the model's own target space

    def pixels(patches: torch.Tensor) -> torch.Tensor:  # cut like SSAT.patchify and the mask
        return unpatchify(patches, enc.mask_patch_size, enc.mask_grid_size, enc.in_chans, enc.tubelet_size)

    removed = out.mask[..., None].expand_as(out.pred).bool()  # [B, L, patch_dim]
    stats = None
    if model.norm_pix_loss and model.video_target == "videomae":
        stats = _videomae_true_stats(out.pred, x, model)
    elif model.norm_pix_loss:
        var, mean = torch.var_mean(model.patchify(x), dim=-1, keepdim=True)  # [B, L, 1] each (as the loss)
        stats = pixels(out.pred * torch.sqrt(var + 1.0e-6) + mean)
    return Reconstruction(pixels(removed), pixels(out.pred), stats, model.norm_pix_loss, parts["rec"].item())


def _videomae_true_stats(pred: torch.Tensor, x: torch.Tensor, model: SSAT) -> torch.Tensor:
    """The prediction [B, L, ts*p*p*3] of a ``video_target: videomae`` model with each tubelet channel's true
    [0, 1]-pixel mean and std re-added (:func:`~deepfake_ssat.models.videomae_target`), normalised back like
    ``x`` [B, 3, T, H, W]."""
    enc = model.encoder
    mean = x.new_tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1, 1)
    std = x.new_tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1, 1)
    raw = videomae_target(x, enc.mask_patch_size, enc.tubelet_size, norm_pix_loss=False)  # [B, L, ts*p*p*3]
    b, length, dim = raw.shape
    var, mu = torch.var_mean(raw.reshape(b, length, dim // 3, 3), dim=2, keepdim=True)  # [B, L, 1, 3] each
    restored = (pred.reshape(b, length, dim // 3, 3) * (var.sqrt() + 1.0e-6) + mu).reshape(b, length, dim)
    clip = unpatchify(restored, enc.mask_patch_size, enc.mask_grid_size, 3, enc.tubelet_size)  # [0, 1] pixels
    return (clip - mean) / std
