"""Synthetic face extractions, the input the ``loader``, ``eval`` and ``train`` benchmarks read.

Folders of real-face crops (the astronaut's face, shifted frame to frame), stored as ``dfssat-extract-faces``
stores them (any ``--format``), with manifests and the store's index, laid out as a DFDC extraction, so the
benchmarks time the real readers on known data.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..faces.extract import write_index
from ..faces.store import DEFAULT_FORMAT, format_params, write_crops
from .scenes import ASTRONAUT_FACE_BOX, astronaut


def synthetic_crops(video: int, frames: int, crop_size: int) -> np.ndarray:
    """[frames, S, S, 3] uint8 RGB face crops of synthetic video number ``video`` (the astronaut's face, moving)."""
    x1, y1, x2, y2 = ASTRONAUT_FACE_BOX
    side = 1.3 * max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    out = np.empty((frames, crop_size, crop_size, 3), np.uint8)
    for i in range(frames):
        dx, dy = 6 * np.sin(i / 5 + video), 4 * np.cos(i / 7 + video)
        left, top = int(cx + dx - side / 2), int(cy + dy - side / 2)
        crop = astronaut()[max(top, 0):top + int(side), max(left, 0):left + int(side)]
        out[i] = cv2.resize(crop, (crop_size, crop_size), interpolation=cv2.INTER_AREA)
    return out


def synthetic_manifest(video: int, frames: int, crop_size: int, store: str, container: str | None,
                       crops: list[dict]) -> dict:
    """The manifest of synthetic video number ``video`` (DFDC part ``video % 3``, label ``video % 2``)."""
    return {"tool": "deepfake_ssat.faces", "status": "ok", "dataset": "dfdc", "method": None, "compression": None,
            "video_id": f"v{video:03d}", "part": f"dfdc_train_part_{video % 3}", "label": video % 2,
            "original": None, "clips": None, "container": container, "crops": crops,
            "params": {"crop_size": crop_size, "sampling": {"mode": "uniform", "frames": frames},
                       **format_params(store)}}


def write_synthetic_extraction(root: Path, videos: int, frames: int, crop_size: int,
                               store: str = DEFAULT_FORMAT) -> None:
    """``videos`` folders of ``frames`` face crops (shifted astronaut faces) in format ``store`` + manifests, and
    the index, DFDC-style."""
    for v in range(videos):
        folder = root / "dfdc" / f"dfdc_train_part_{v % 3}" / f"v{v:03d}"
        folder.mkdir(parents=True)
        crops = synthetic_crops(v, frames, crop_size)
        container, stored = write_crops(folder, store, [(f"{i * 3:06d}", crop) for i, crop in enumerate(crops)])
        entries = [{"frame": i * 3, "track": 0, **where} for i, where in enumerate(stored)]
        manifest = synthetic_manifest(v, frames, crop_size, store, container, entries)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    write_index(root)
