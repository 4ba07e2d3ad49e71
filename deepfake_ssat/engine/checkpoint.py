"""Checkpoints: atomic save, weights-only load with a content digest, RNG capture.

Nothing here unpickles arbitrary objects: every file is read with ``torch.load(weights_only=True)``
(or as ``.safetensors``) and a file that would need more is refused with one line. A checkpoint
stores the sha256 of its model weights (``model_sha256``); loading recomputes and compares it.
Turning a checkpoint (or a shared detector file) into an inference model: :mod:`.weights`.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..io import atomic_write, first_line


class CheckpointError(ValueError):
    """A checkpoint file that is refused (unsafe, unreadable, corrupted or of the wrong kind): one line."""


# Official MAE / VideoMAE .pth files store their argparse arguments beside the weights; a Namespace
# only holds the plain values the restricted unpickler already allows. Nothing else is allow-listed.
_ALLOWED_GLOBALS = [argparse.Namespace]
DIGEST_KEY = "model_sha256"


def tensor_digest(state: Mapping[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes (sorted by name; device independent)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_weights_only(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """The object stored in a ``torch.save`` file, unpickled with ``weights_only=True`` (tensors, numbers,
    strings, lists, tuples, dicts and an argparse ``Namespace``), or a ``.safetensors`` file's tensors.

    Never falls back to full unpickling: a file that needs it is refused with :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found; check the path")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path, device=str(map_location))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({first_line(e, 160)})") from None
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if re.search(r"Unsupported operand|invalid load key|could not find MARK", str(e)):  # not a pickle at all
            raise CheckpointError(f"{path}: not a readable checkpoint ({_unsafe_reason(e)}); pass a file written "
                                  f"by torch.save or a .safetensors file") from None
        raise CheckpointError(
            f"{path}: refused: it holds Python objects that could run code when loaded "
            f"({_unsafe_reason(e)}); only tensors, numbers, strings, lists and dicts are read. "
            f"Ask for a plain state dict or a safetensors export (dfssat-export --format safetensors)") from None
    except Exception as e:  # zip / EOF errors: truncated or not a torch file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(e).__name__}: {first_line(e, 160)}); "
                              f"pass a file written by torch.save or a .safetensors file") from None


def _unsafe_reason(error: pickle.UnpicklingError) -> str:
    """The unpickler's complaint, e.g. ``Unsupported global: GLOBAL builtins.open``."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    if found:
        return f"global {found.group(1)}"
    found = re.search(r"Unsupported operand \d+", str(error))
    return found.group(0) if found else first_line(error, 160)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Atomically ``torch.save`` ``state`` with the digest of ``state["model"]`` under ``model_sha256``."""
    state = {**state, DIGEST_KEY: tensor_digest(state["model"])}
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """A training checkpoint (dict), read weights-only; its ``model`` weights are checked against the
    stored digest. Raises FileNotFoundError or :class:`CheckpointError` (one line)."""
    ckpt = read_weights_only(path, map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: holds a {type(ckpt).__name__}, not a checkpoint dict; "
                              f"pass a best.pt / last.pt written by dfssat-train")
    verify_digest(ckpt.get("model"), ckpt.get(DIGEST_KEY), path)
    return ckpt


def verify_digest(state: Any, expected: str | None, path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` when ``state``'s tensors do not hash to ``expected`` (None: no digest
    stored, e.g. a foreign file; nothing to check)."""
    if expected is None:
        return
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: its weights are not a state dict of tensors; the file is damaged")
    if tensor_digest(state) != expected:
        raise CheckpointError(f"{path}: weights do not match the checkpoint's sha256 digest: the file is corrupted "
                              f"or was edited; download / copy it again")


def capture_rng(device: torch.device | None = None) -> dict:
    """Every RNG state a run on ``device`` draws from, as tensors and plain numbers (loadable with
    ``weights_only=True``): Python's, NumPy's, torch's CPU generator and, on a GPU, that GPU's generator (not every
    visible GPU's: the others are not this run's, and a resume may see fewer of them)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device | None = None) -> None:
    """Put back what :func:`capture_rng` took; its GPU state goes to ``device`` (ignored on a CPU)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], np.asarray(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, (list, tuple)):  # older checkpoints: one state per GPU visible then; this device's, if any
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)
