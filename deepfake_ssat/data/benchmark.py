"""P5: face-clip loading speed per worker vs reading the same stored crops in a plain loop.

A synthetic extraction (manifests + real-face crops, as ``tools/extract_faces.py`` writes them) is
read (a) by ``cv2.imread`` + BGR->RGB in a loop over every crop — the decode floor — and (b) by
:class:`~deepfake_ssat.data.faceclips.FaceClipDataset` (training augmentation, normalisation,
``(C, T, H, W)`` tensor) one item at a time in this process, i.e. what one DataLoader worker does.
Both single-threaded. ``loader_over_decode`` = loader frames/s ÷ decode frames/s (goal >= 0.5).
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import __version__
from .faceclips import FaceClipDataset, read_crop, scan_extraction
from .sampling import EpochSampler, SeededItems


def write_synthetic_extraction(root: Path, videos: int, frames: int, crop_size: int,
                               image_format: str = "png") -> None:
    """``videos`` folders of ``frames`` face crops (shifted astronaut faces) + manifests, DFDC-style."""
    from ..faces.synthetic import ASTRONAUT_FACE_BOX, astronaut

    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    side = 1.3 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    for v in range(videos):
        folder = root / "dfdc" / f"dfdc_train_part_{v % 3}" / f"v{v:03d}"
        folder.mkdir(parents=True)
        crops = []
        for i in range(frames):
            dx, dy = 6 * np.sin(i / 5 + v), 4 * np.cos(i / 7 + v)
            left, top = int(cx + dx - side / 2), int(cy + dy - side / 2)
            crop = astronaut()[max(top, 0):top + int(side), max(left, 0):left + int(side)]
            crop = cv2.resize(crop, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
            name = f"{i * 3:06d}.{image_format}"
            cv2.imwrite(str(folder / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
            crops.append({"frame": i * 3, "file": name, "track": 0})
        manifest = {"tool": "deepfake_ssat.faces", "status": "ok", "dataset": "dfdc", "method": None,
                    "compression": None, "video_id": f"v{v:03d}", "part": f"dfdc_train_part_{v % 3}",
                    "label": v % 2, "original": None, "clips": None, "crops": crops,
                    "params": {"crop_size": crop_size, "image_format": image_format,
                               "sampling": {"mode": "uniform", "frames": frames}}}
        (folder / "manifest.json").write_text(json.dumps(manifest))


def run_loader_benchmark(videos: int = 8, frames: int = 32, crop_size: int = 224, img_size: int = 224,
                         clip_len: int = 16, image_format: str = "png", repeats: int = 3,
                         command: str | None = None) -> dict:
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


def format_loader(result: dict) -> str:
    return (f"P5 loader/decode = {result['loader_over_decode']:.2f} (goal >= 0.5; eval "
            f"{result['eval_loader_over_decode']:.2f}); {result['clips_per_s_per_worker']:.1f} training clips/s "
            f"per worker ({result['setup']['clip_len']}x{result['setup']['img_size']}^2), decode "
            f"{result['decode_frames_per_s']:.0f} frames/s")
