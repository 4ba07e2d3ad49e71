"""Where and how tensors run: device choice, autocast, and process-level CPU settings.

Training, evaluation, analysis and inference all pick their device with :func:`resolve_device` and
their mixed precision with :func:`autocast` (bf16 / fp16 on CUDA only: bf16 is very slow on CPUs).
"""
from __future__ import annotations

import sys
from contextlib import nullcontext
from typing import Any, ContextManager

import torch

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}


def resolve_device(name: str, what: str = "--device") -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; ValueError (one line naming
    ``what``, the flag or config key) when the name is malformed or CUDA / that GPU is unavailable."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what}: {name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what}: {name!r} is not supported; use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what}: {name} requested but CUDA is not available; use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"{what}: {name} requested but only {torch.cuda.device_count()} GPU(s) are visible")
    return device


def amp_dtype(amp: str, device: torch.device, what: str = "train.amp") -> torch.dtype | None:
    """The autocast dtype for ``amp`` (bf16 | fp16 | none) on ``device``: None (fp32) off CUDA."""
    if amp not in AMP_DTYPES:
        raise ValueError(f"{what}: must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    return AMP_DTYPES[amp] if device.type == "cuda" else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """``torch.autocast`` to ``dtype`` on ``device``, or a no-op context for None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def tune_malloc(mmap_threshold: int = 32 * 2 ** 20) -> dict[str, Any]:
    """Keep freed activation memory in the process (glibc): fixed mmap threshold, no heap trimming.

    By default glibc returns large freed blocks to the OS and the next step faults them in again
    (zeroed pages: kernel time). ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` + ``mallopt(M_TRIM_THRESHOLD,
    max)`` keeps them. Process-wide and irreversible. Returns what was set, or why nothing was.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return {"tuned": False, "why": "glibc mallopt unavailable on this platform"}
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = (libc.mallopt(m_mmap_threshold, ctypes.c_int(mmap_threshold)) == 1
              and libc.mallopt(m_trim_threshold, ctypes.c_int(2 ** 31 - 1)) == 1)
    except (OSError, AttributeError) as e:
        return {"tuned": False, "why": f"mallopt failed: {e}"}
    if not ok:
        return {"tuned": False, "why": "mallopt returned an error"}
    return {"tuned": True, "M_MMAP_THRESHOLD": mmap_threshold, "M_TRIM_THRESHOLD": 2 ** 31 - 1}
