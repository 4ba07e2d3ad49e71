"""Inference weights: a trained classifier as it is loaded to score videos or shared with others.

A training checkpoint holds the whole model (encoder + head, maybe the auxiliary decoder); inference
needs only ``encoder(x) -> logits [B, num_classes]``. The shareable form is a detector file pair:
``<stem>.safetensors`` (encoder weights, cannot carry code) + ``<stem>.json`` (config, sha256, preprocessing).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from ..config import Config, config_from_dict
from ..io import atomic_write, atomic_write_json, first_line
from .checkpoint import CheckpointError, load_checkpoint, read_weights_only, tensor_digest, verify_digest

DETECTOR_FORMAT = "deepfake_ssat.detector/1"
CLASSIFIER_WEIGHTS = ("head.weight", "head.fc.weight", "fc.weight")  # ViT / VideoMAE / CvT, Swin, ResNet


def save_detector(path: str | os.PathLike, encoder_state: Mapping[str, torch.Tensor], config: dict,
                  preprocessing: dict) -> tuple[Path, Path]:
    """Write a shareable detector: ``<stem>.safetensors`` (encoder + head weights, cannot carry code) and
    ``<stem>.json`` (format, weights file name, their sha256, the model config, the preprocessing).
    Returns both paths."""
    from safetensors.torch import save

    path = Path(path)
    weights, sidecar = path.with_suffix(".safetensors"), path.with_suffix(".json")
    state = {k: v.detach().cpu().contiguous() for k, v in encoder_state.items()}
    atomic_write(weights, lambda f: f.write(save(state)))
    atomic_write_json(sidecar, {"format": DETECTOR_FORMAT, "weights": weights.name, "sha256": tensor_digest(state),
                                "config": config, "preprocessing": preprocessing})
    return weights, sidecar


def is_detector_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names one file of a detector pair (by suffix; :func:`read_detector` checks the rest)."""
    return Path(path).suffix in (".safetensors", ".json")


def read_detector(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A detector written by :func:`save_detector` (given its ``.safetensors`` or ``.json``), as a
    checkpoint-like dict ``{"config", "model": {"encoder.<key>": tensor}, "preprocessing"}``; the
    weights are checked against the JSON's sha256."""
    path = Path(path)
    sidecar = path.with_suffix(".json")
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: no {sidecar.name} beside it; a detector is the .safetensors weights plus "
                              f"the .json that dfssat-export --format safetensors writes next to them")
    try:
        meta = json.loads(sidecar.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"{sidecar}: unreadable detector description ({first_line(e, 160)})") from None
    if not isinstance(meta, dict) or meta.get("format") != DETECTOR_FORMAT:
        raise CheckpointError(f"{sidecar}: not a deepfake_ssat detector description (format {DETECTOR_FORMAT})")
    name = meta.get("weights")
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise CheckpointError(f"{sidecar}: 'weights' must be a file name beside it, got {name!r}")
    if not isinstance(meta.get("config"), dict) or not isinstance(meta.get("sha256"), str):
        raise CheckpointError(f"{sidecar}: needs 'config' (a mapping) and 'sha256' (of the weights)")
    weights = sidecar.parent / name
    state = read_weights_only(weights, map_location)
    verify_digest(state, meta["sha256"], weights)
    return {"config": meta["config"], "model": {f"encoder.{k}": v for k, v in state.items()},
            "preprocessing": meta.get("preprocessing") or {}}


def strip_decoder(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the auxiliary decoder's weights; what is left is all that inference needs."""
    return {k: v for k, v in state_dict.items() if not k.startswith("decoder.")}


def read_inference_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A training checkpoint, or a detector exported as safetensors (:func:`save_detector`), as a dict with at least
    ``config`` and ``model``; :class:`CheckpointError` (one line) for anything else."""
    ckpt = read_detector(path, map_location) if is_detector_file(path) else load_checkpoint(path, map_location)
    if "config" not in ckpt or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a deepfake_ssat checkpoint (needs 'config' and 'model' entries)")
    return ckpt


def training_extraction(ckpt: dict, path: str | os.PathLike) -> dict | None:
    """The face-extraction parameters of the store the model was trained on (crop size and scale, store format,
    face detector settings), as a checkpoint's ``meta`` or an exported detector's ``preprocessing`` records them;
    None when unknown (an image model, or a checkpoint written before they were recorded).
    :class:`CheckpointError` naming ``path`` when they are not plain JSON data."""
    for holder in (ckpt.get("meta"), ckpt.get("preprocessing")):
        extraction = holder.get("extraction") if isinstance(holder, dict) else None
        if extraction is None:
            continue
        try:
            if isinstance(extraction, dict) and json.loads(json.dumps(extraction)) == extraction:
                return extraction
        except (TypeError, ValueError):
            pass
        raise CheckpointError(f"{path}: its recorded extraction parameters are not a plain mapping; re-save the "
                              f"checkpoint without meta.extraction or pass the face options explicitly")
    return None


def inference_model(ckpt: dict, path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Encoder + head of a checkpoint read by :func:`read_inference_checkpoint` (``path`` names it in errors), in
    eval mode; decoder weights are not needed. Returns ``(encoder, config)``; ``encoder(x)`` gives logits."""
    from .build import build_encoder

    cfg = config_from_dict(ckpt["config"], source=str(path))
    encoder_state = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    head = next((k for k in CLASSIFIER_WEIGHTS if k in encoder_state), None)
    if head is None:
        raise CheckpointError(f"{path}: no classifier weights ({', '.join(CLASSIFIER_WEIGHTS)}) in the checkpoint's "
                              f"encoder")
    num_classes = encoder_state[head].shape[0]
    encoder = build_encoder(cfg.model, num_classes)
    try:
        encoder.load_state_dict(encoder_state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: its weights do not fit model {cfg.model.name!r} as its config describes "
                              f"({first_line(e, 160)})") from None
    return encoder.eval().to(map_location), cfg


def load_inference_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Encoder + head from a training checkpoint or an exported detector, in eval mode (decoder weights are not
    needed): :func:`inference_model` of :func:`read_inference_checkpoint`. Returns ``(encoder, config)``."""
    return inference_model(read_inference_checkpoint(path, map_location), path, map_location)
