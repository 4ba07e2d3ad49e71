"""Atomic checkpoint I/O, RNG state capture and decoder-free loading for inference."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from ..config import Config, config_from_dict
from ..io import atomic_write


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated / foreign files
        raise ValueError(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None


def capture_rng() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def strip_decoder(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the auxiliary decoder's weights; what is left is all that inference needs."""
    return {k: v for k, v in state_dict.items() if not k.startswith("decoder.")}


CLASSIFIER_WEIGHTS = ("head.weight", "head.fc.weight", "fc.weight")  # ViT / VideoMAE / CvT, Swin, ResNet


def load_inference_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[nn.Module, Config]:
    """Encoder + head from a training checkpoint, in eval mode; decoder weights are not needed.

    Returns ``(encoder, config)``; ``encoder(x)`` gives logits.
    """
    from .build import build_encoder

    ckpt = load_checkpoint(path, map_location)
    if "config" not in ckpt or "model" not in ckpt:
        raise ValueError(f"{path}: not a deepfake_ssat checkpoint (needs 'config' and 'model' entries)")
    cfg = config_from_dict(ckpt["config"], source=str(path))
    encoder_state = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    head = next((k for k in CLASSIFIER_WEIGHTS if k in encoder_state), None)
    if head is None:
        raise ValueError(f"{path}: no classifier weights ({', '.join(CLASSIFIER_WEIGHTS)}) in the checkpoint's encoder")
    num_classes = encoder_state[head].shape[0]
    encoder = build_encoder(cfg.model, num_classes)
    encoder.load_state_dict(encoder_state)
    return encoder.eval().to(map_location), cfg
