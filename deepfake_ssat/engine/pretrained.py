"""Initialise an encoder from a pre-trained checkpoint: official VideoMAE / MAE / timm, or our own.

``load_pretrained(encoder, source)`` reads the file, recognises its format, maps its keys onto the
encoder with the model's ``checkpoint_filter_fn`` and reports what loaded. Every problem raises
:class:`PretrainedError`, one line naming the file and what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ..models import video_vit, vit
from .checkpoint import DIGEST_KEY, CheckpointError, read_weights_only, verify_digest
from .weights import is_detector_file, read_detector

OPTIONAL_PREFIXES = ("head.", "fc_norm.", "norm.")  # may stay at their fresh init (fine-tuning starts there)


class PretrainedError(ValueError):
    """A pre-trained checkpoint that cannot initialise the encoder, phrased as one line."""


def _read(path: Path) -> Any:
    """The file's content, read weights-only (see :mod:`.checkpoint`); our training checkpoints and
    exported detectors are checked against their digest. Refusals become :class:`PretrainedError`."""
    try:
        if is_detector_file(path) and path.with_suffix(".json").is_file():
            return read_detector(path)
        obj = read_weights_only(path)
        if isinstance(obj, dict) and DIGEST_KEY in obj:
            verify_digest(obj.get("model"), obj[DIGEST_KEY], path)
        return obj
    except FileNotFoundError:
        raise PretrainedError(f"{path}: pre-trained checkpoint not found; check the path") from None
    except CheckpointError as e:
        raise PretrainedError(str(e)) from None


def _own_key(key: str) -> str | None:
    return key.removeprefix("encoder.") if key.startswith("encoder.") else None


def _split(ckpt: dict, encoder: nn.Module, name: str) -> tuple[str, dict[str, torch.Tensor], Callable]:
    """Unwrap ``ckpt`` -> (format, its state dict, map checkpoint key -> encoder key or None)."""
    model = ckpt.get("model")
    if "config" in ckpt and isinstance(model, dict) and any(k.startswith("encoder.") for k in model):
        return "deepfake_ssat", {k: v for k, v in model.items() if isinstance(v, torch.Tensor)}, _own_key
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(ckpt.get(wrapper), dict):
            ckpt = ckpt[wrapper]
            break
    state = {k: v for k, v in ckpt.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise PretrainedError(f"{name}: holds no tensors; pass a state dict or a training checkpoint")
    if isinstance(encoder, video_vit.VideoViT):
        return "videomae", state, video_vit.videomae_key
    is_mae = any(vit.mae_key(k) is None for k in state)
    return "mae" if is_mae else "timm", state, vit.mae_key


def load_pretrained(encoder: nn.Module, source: str | Path | dict) -> dict:
    """Load pre-trained weights from ``source`` (a file or an already loaded checkpoint) into ``encoder``.

    Formats: (a) our training checkpoint ({"config", "model": SSAT state dict}): its ``encoder.*``
    entries; (b) official VideoMAE, pre-training or fine-tuned, for a ``VideoViT``; (c) MAE or timm
    image ViT for an ``ImageViT``. Wrappers {"model"|"module"|"state_dict": ...} and ``module.``
    prefixes are undone; (a) and (b)/(c) go through the model's ``checkpoint_filter_fn``, so a head
    of another ``num_classes`` is dropped and an image ``pos_embed`` is resampled to the grid.

    Missing ``head.*``, ``fc_norm.*`` and ``norm.*`` keep their fresh init; any other missing key
    (e.g. a block: depth mismatch) is an error, checked before anything is loaded.

    Returns ``{"format", "loaded": n, "missing": [...], "unexpected": [...], "dropped": [...]}`` where
    ``dropped`` lists checkpoint keys deliberately left out (decoder, position table, unfit head).
    """
    name = "<dict>" if isinstance(source, dict) else str(source)
    ckpt = source if isinstance(source, dict) else _read(Path(source))
    if not isinstance(ckpt, dict):
        raise PretrainedError(f"{name}: holds a {type(ckpt).__name__}, not a state dict; "
                              "save model.state_dict() instead")
    if isinstance(encoder, video_vit.VideoViT):
        filter_fn = video_vit.checkpoint_filter_fn
    elif isinstance(encoder, vit.ImageViT):
        filter_fn = vit.checkpoint_filter_fn
    else:
        raise PretrainedError(f"{name}: cannot initialise a {type(encoder).__name__}; "
                              "only VideoViT and ImageViT encoders are supported")
    fmt, raw, key_map = _split(ckpt, encoder, name)
    state = {key_map(k): v for k, v in raw.items() if key_map(k) is not None} if fmt == "deepfake_ssat" else raw
    try:
        filtered = filter_fn(state, encoder)
    except ValueError as e:
        raise PretrainedError(f"{name}: {e}; build the encoder with the checkpoint's architecture "
                              "(embed dim, depth, patch and tubelet size)") from None
    target = encoder.state_dict()
    loaded = [k for k in filtered if k in target]
    if not loaded:
        raise PretrainedError(f"{name}: no key matches a {type(encoder).__name__} "
                              f"({fmt} format assumed); expected e.g. 'blocks.0.attn.qkv.weight'")
    missing = [k for k in target if k not in filtered]
    required = [k for k in missing if not k.startswith(OPTIONAL_PREFIXES)]
    if required:
        raise PretrainedError(f"{name}: checkpoint lacks {len(required)} encoder weights (first: {required[0]}); "
                              "build the encoder with the checkpoint's depth and token layout")
    encoder.load_state_dict(filtered, strict=False)
    return {
        "format": fmt,
        "loaded": len(loaded),
        "missing": missing,
        "unexpected": [k for k in filtered if k not in target],
        "dropped": [k for k in raw if (new := key_map(k)) is None or new not in filtered],
    }
