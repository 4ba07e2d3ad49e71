"""The ``loader`` benchmark (P5): can one DataLoader worker feed face clips about as fast as the crops decode?

Over a synthetic extraction, single-threaded: ``cv2.imread`` + BGR->RGB of every crop (the decode floor) vs
:class:`~deepfake_ssat.data.faceclips.FaceClipDataset` items (augmentation, normalisation, ``(C, T, H, W)``
tensors) read one at a time, as a worker does. ``loader_over_decode`` = loader ÷ decode frames/s (goal >= 0.5).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import torch

from .. import __version__
from ..data.faceclips import FaceClipDataset, read_crop, scan_extraction
from ..data.sampling import EpochSampler, SeededItems
from .common import write_synthetic_extraction


def run_loader_benchmark(videos: int = 8, frames: int = 32, crop_size: int = 224, img_size: int = 224,
                         clip_len: int = 16, image_format: str = "png", repeats: int = 3,
                         command: str | None = None) -> dict[str, Any]:
    """Measure P5 on a temporary synthetic extraction; returns the JSON-ready result."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="loader-bench-") as tmp:
        root = Path(tmp)
        write_synthetic_extraction(root, videos, frames, crop_size, image_format)
        found, _ = scan_extraction(root, clip_len, 1, img_size)
        paths = [v.dir / f for v in found for seg in v.segments for _, f in seg]

        def decode() -> float:
            start = time.perf_counter()
            for path in paths:
                read_crop(path)
            return len(paths) / (time.perf_counter() - start)

        def load(train: bool) -> float:
            ds = FaceClipDataset(found, img_size, clip_len, train=train, augment=train, eval_clips=2)
            items = SeededItems(ds)
            sampler = EpochSampler(len(ds), seed=0)
            # enough clips to read about as many crops as the decode loop
            passes = max(1, round(len(paths) / (len(ds) * clip_len)))
            start, n = time.perf_counter(), 0
            for epoch in range(passes):
                sampler.set_epoch(epoch)
                for key in sampler:
                    items[key]
                    n += 1
            return n * clip_len / (time.perf_counter() - start)

        decode()  # warm the page cache
        decode_fps = max(decode() for _ in range(repeats))
        train_fps = max(load(True) for _ in range(repeats))
        eval_fps = max(load(False) for _ in range(repeats))
    return {
        "benchmark": "loader", "version": __version__, "command": command,
        "setup": {"videos": videos, "crops_per_video": frames, "crop_size": crop_size, "img_size": img_size,
                  "clip_len": clip_len, "format": image_format, "threads": 1},
        "decode_frames_per_s": round(decode_fps, 1),
        "loader_frames_per_s": round(train_fps, 1),
        "eval_loader_frames_per_s": round(eval_fps, 1),
        "loader_over_decode": round(train_fps / decode_fps, 3),
        "eval_loader_over_decode": round(eval_fps / decode_fps, 3),
        "clips_per_s_per_worker": round(train_fps / clip_len, 2),
        "goal": {"loader_over_decode": ">= 0.5"},
        "met": train_fps / decode_fps >= 0.5,
    }


def format_loader(result: dict[str, Any]) -> str:
    """One-line text summary of :func:`run_loader_benchmark`."""
    return (f"P5 loader/decode = {result['loader_over_decode']:.2f} (goal >= 0.5; eval "
            f"{result['eval_loader_over_decode']:.2f}); {result['clips_per_s_per_worker']:.1f} training clips/s "
            f"per worker ({result['setup']['clip_len']}x{result['setup']['img_size']}^2), decode "
            f"{result['decode_frames_per_s']:.0f} frames/s")
