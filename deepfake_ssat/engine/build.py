"""Config -> modules. The only place that reads config objects to build models."""
from __future__ import annotations

import dataclasses
import re

import torch
import torch.nn as nn

from ..config import Config, ConfigError, ModelConfig
from ..models import SSAT, MAEDecoder, SimMIMDecoder
from ..models.aux_tasks import DINOAux, SimCLRAux, SSATMultiView
from ..models.registry import get_model_factory


def build_encoder(cfg: ModelConfig, num_classes: int) -> nn.Module:
    """Registered encoder ``cfg.name`` with every set (non-null) model field as a keyword argument."""
    try:
        factory = get_model_factory(cfg.name)
    except KeyError as e:
        raise ConfigError(f"model.name: {e.args[0]}") from None
    kwargs = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "name" and v is not None}
    kwargs.setdefault("num_classes", num_classes)
    try:
        return factory(**kwargs)
    except TypeError as e:
        bad = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if bad:
            raise ConfigError(f"model.{bad.group(1)}: not an argument of model {cfg.name!r}; remove it") from None
        raise
    except ValueError as e:
        raise ConfigError(f"model: {cfg.name}: {e}") from None


def build_decoder(cfg: Config, encoder: nn.Module) -> nn.Module:
    """The decoder that fits ``encoder.masking``: SimMIM's linear head for ``"replace"`` (Swin; it has
    no width or depth, so ``cfg.decoder`` only needs to be non-null), else the MAE decoder on the
    visible tokens (ViT, VideoMAE and, as in ConvMAE, CvT)."""
    if encoder.masking == "replace":
        return SimMIMDecoder(
            in_dim=encoder.num_features,
            grid_size=encoder.grid_size,
            stride=encoder.patch_size,
            mask_patch_size=encoder.mask_patch_size,
            out_chans=encoder.in_chans,
        )
    d = cfg.decoder
    tubelet = encoder.tubelet_size
    return MAEDecoder(
        in_dim=encoder.num_features,
        grid_size=encoder.grid_size,
        patch_dim=tubelet * encoder.patch_size ** 2 * encoder.in_chans,
        num_prefix_tokens=encoder.num_prefix_tokens,
        embed_dim=d.embed_dim,
        depth=d.depth,
        num_heads=d.num_heads,
        mlp_ratio=d.mlp_ratio,
    )


AUX_TASKS = ("mae", "simclr", "dino")


def label_smoothing(cfg: Config) -> float:
    """``ssat.label_smoothing``, or 0 when Mixup / CutMix is on: it then smooths the mixed targets itself."""
    return 0.0 if cfg.data.images.mixup > 0 or cfg.data.images.cutmix > 0 else cfg.ssat.label_smoothing


def build_aux(cfg: Config, encoder: nn.Module) -> nn.Module:
    """The multi-view auxiliary task ``ssat.aux`` (simclr | dino) on ``encoder``'s pooled features."""
    if cfg.ssat.aux == "simclr":
        s = cfg.ssat.simclr
        return SimCLRAux(encoder.num_features, proj_dim=s.proj_dim, hidden_dim=s.hidden_dim, temperature=s.temperature)
    d = cfg.ssat.dino
    return DINOAux(encoder.num_features, out_dim=d.out_dim, hidden_dim=d.hidden_dim, bottleneck_dim=d.bottleneck_dim,
                   teacher_temp=d.teacher_temp, student_temp=d.student_temp, center_momentum=d.center_momentum,
                   ema=d.ema)


def build_model(cfg: Config, num_classes: int) -> SSAT | SSATMultiView:
    """Encoder + (unless scratch) decoder, wrapped with the SSAT loss settings.

    ``ssat.lam == 1`` or ``decoder: null`` is the scratch baseline: no decoder is built.
    ``ssat.aux`` simclr / dino (with ``lam < 1``) give an :class:`SSATMultiView` instead, which
    trains on two views per image and needs no decoder.
    """
    encoder = build_encoder(cfg.model, num_classes)
    lam = cfg.ssat.lam
    if not 0.0 <= lam <= 1.0:
        raise ConfigError(f"ssat.lam: must be in [0, 1], got {lam}")
    if not 0.0 <= cfg.ssat.label_smoothing < 1.0:
        raise ConfigError(f"ssat.label_smoothing: must be in [0, 1), got {cfg.ssat.label_smoothing}")
    if cfg.ssat.aux not in AUX_TASKS:
        raise ConfigError(f"ssat.aux: must be one of {', '.join(AUX_TASKS)}, got {cfg.ssat.aux!r}")
    if cfg.ssat.aux != "mae" and lam < 1.0:  # multi-view auxiliary task: its own branch
        if lam == 0.0:
            raise ConfigError(f"ssat.lam: 0 (self-supervised pre-training alone) is supported with ssat.aux=mae "
                              f"only; {cfg.ssat.aux} needs 0 < lam < 1")
        return SSATMultiView(encoder, build_aux(cfg, encoder), lam=lam, label_smoothing=label_smoothing(cfg))
    if cfg.decoder is None and lam != 1.0:
        raise ConfigError(f"ssat.lam: {lam} needs a decoder, but decoder is null; set ssat.lam=1.0 for scratch")
    if lam != 1.0 and encoder.masking is None:
        raise ConfigError(f"ssat.lam: {lam} needs a masked pass, which model {cfg.model.name!r} (a classification-only "
                          f"baseline) has not; set ssat.lam=1.0")
    if not 0.0 <= cfg.ssat.mask_ratio < 1.0:
        raise ConfigError(f"ssat.mask_ratio: must be in [0, 1), got {cfg.ssat.mask_ratio}")
    _check_video_target(cfg, encoder)
    decoder = build_decoder(cfg, encoder) if lam < 1.0 else None
    model = SSAT(
        encoder,
        decoder,
        mask_ratio=cfg.ssat.mask_ratio,
        lam=lam,
        norm_pix_loss=cfg.ssat.norm_pix_loss,
        label_smoothing=label_smoothing(cfg),
        video_target=cfg.ssat.video_target,
    )
    if decoder is not None:
        _check_masks_some_token(model, cfg.ssat.mask_ratio)
    return model


def _check_video_target(cfg: Config, encoder: nn.Module) -> None:
    """``ssat.video_target: videomae`` is VideoMAE's target for RGB clips: one line for an image or non-RGB model."""
    if cfg.ssat.video_target == "videomae" and (encoder.num_frames is None or encoder.in_chans != 3):
        kind = "an image model" if encoder.num_frames is None else f"a {encoder.in_chans}-channel video model"
        raise ConfigError(f"ssat.video_target: videomae is VideoMAE's target for RGB clips; model "
                          f"{cfg.model.name!r} is {kind} (images take MAE's target): use joint")


def _check_masks_some_token(model: SSAT, ratio: float) -> None:
    """The reconstruction loss averages over masked tokens: a ratio that masks none of the model's grid
    would make it 0 / 0 = NaN at the first update."""
    with torch.random.fork_rng(devices=[]):  # the probe must not shift the run's random stream
        _, mask, _ = model.random_mask(1, "cpu")  # mask [1, L], 1 = removed
    if mask.sum() == 0:
        tokens = mask.shape[1]
        raise ConfigError(f"ssat.mask_ratio: {ratio} masks no token of this model's {tokens}-token mask grid; "
                          f"use a ratio that masks at least one (e.g. 0.75), or ssat.lam=1.0 for no reconstruction")
