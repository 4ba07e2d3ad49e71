"""Annotation strips: a few sampled frames of a video side by side, the main face track's box and the
verdict drawn on each, written as one PNG so a person can check what the detector looked at.

Frames are ``(H, W, 3)`` uint8 RGB as decoded; each tile is scaled to ``STRIP_HEIGHT`` pixels high.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..faces.detect import FrameFaces, Track
from ..io import atomic_write

STRIP_HEIGHT = 240  # pixels: height of each frame in an annotation strip
STRIP_FRAMES = 4


def write_strip(path: Path, frames: list[np.ndarray], indices: list[int], faces: list[FrameFaces],
                track: Track | None, text: str) -> None:
    """PNG of up to :data:`STRIP_FRAMES` frames side by side (each ``STRIP_HEIGHT`` px high), the main
    ``track``'s face box drawn on each (red for FAKE, green otherwise) and ``text`` + frame index on top.

    ``frames``: (H, W, 3) uint8 RGB, one per sampled index in ``indices``.
    """
    positions = sorted(track.members) if track is not None else list(range(len(frames)))
    picks = [positions[i] for i in sorted(set(np.linspace(0, len(positions) - 1, STRIP_FRAMES).round().astype(int)))]
    colour = (0, 0, 255) if text.startswith("FAKE") else (0, 200, 0)  # BGR
    tiles = []
    for pos in picks:
        height, width = frames[pos].shape[:2]
        scale = STRIP_HEIGHT / height
        tile = cv2.resize(cv2.cvtColor(frames[pos], cv2.COLOR_RGB2BGR), (max(1, round(width * scale)), STRIP_HEIGHT),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if track is not None:
            x1, y1, x2, y2 = (faces[pos].boxes[track.members[pos]] * scale).round().astype(int).tolist()
            cv2.rectangle(tile, (x1, y1), (x2, y2), colour, 2)
        for thickness, ink in ((3, (0, 0, 0)), (1, (255, 255, 255))):  # outlined, legible on any background
            cv2.putText(tile, f"#{indices[pos]} {text}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ink, thickness,
                        cv2.LINE_AA)
        tiles.append(tile)
    ok, png = cv2.imencode(path.suffix or ".png", cv2.hconcat(tiles))
    if not ok:
        raise OSError(f"{path}: cannot encode the image")
    atomic_write(path, lambda f: f.write(png.tobytes()))  # never a half-written strip (Ctrl-C, full disk)
