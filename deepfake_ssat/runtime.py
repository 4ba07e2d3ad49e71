"""Where and how tensors run: device choice and autocast (the process memory setting: `deepfake_ssat.data.workers`).

Training, evaluation, analysis, inference, extraction and the benchmarks all pick their device with
:func:`resolve_device` (so ``--device auto`` means the same in every command) and their mixed precision with
:func:`autocast` (bf16 / fp16 on CUDA only: bf16 is very slow on CPUs).

A ground-floor module: it imports torch and nothing of the package, so a command checks its ``--device``
before the trainer, timm or a video decoder loads (``tests/test_architecture.py`` counts what it loads).
"""
from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def resolve_device(name: str, what: str = "--device") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; ValueError (one line, ``<what> <name>:
    why``, ``what`` the flag or config key) when the name is malformed or CUDA / that GPU is unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what} {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} {name}: not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} {name}: CUDA is not available on this machine; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{what} {name}: only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def amp_dtype(amp: str, device: torch.device, what: str = "train.amp") -> torch.dtype | None:
    """The autocast dtype for ``amp`` (bf16 | fp16 | none) on ``device``: None (fp32) off CUDA."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"{what}: must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    return AMP_DTYPES[amp] if device.type == "cuda" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
