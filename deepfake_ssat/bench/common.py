"""Synthetic face extractions, the input the ``loader`` and ``eval`` benchmarks read.

Folders of real-face crops (the astronaut's face, shifted frame to frame) and their manifests, laid out as
``tools/extract_faces.py`` writes a DFDC extraction, so the benchmarks time the real readers on known data.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ..faces.synthetic import ASTRONAUT_FACE_BOX, astronaut


def write_synthetic_extraction(root: Path, videos: int, frames: int, crop_size: int,
                               image_format: str = "png") -> None:
    """``videos`` folders of ``frames`` face crops (shifted astronaut faces) + manifests, DFDC-style."""
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
