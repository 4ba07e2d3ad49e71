"""Annotation strips: a few sampled frames of a video side by side, every scored face track's box with its
probability and the verdict drawn on each, written as one PNG so a person can check what the detector looked at.

Frames are ``(H, W, 3)`` uint8 RGB as decoded; each tile is scaled to ``STRIP_HEIGHT`` pixels high.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ..faces.detect import FrameFaces, Track
from ..io import atomic_write

STRIP_HEIGHT = 240  # pixels: height of each frame in an annotation strip
STRIP_FRAMES = 4
FAKE_BGR, REAL_BGR = (0, 0, 255), (0, 200, 0)  # box colours: red for a FAKE track, green otherwise

ScoredTrack = tuple[Track, "float | None", str]  # (track, its fake probability, its label FAKE / REAL)


def _outlined(tile: np.ndarray, text: str, origin: tuple[int, int], colour: tuple[int, int, int],
              scale: float = 0.5) -> None:
    """``text`` in ``colour`` with a black outline: legible on any background."""
    for thickness, ink in ((3, (0, 0, 0)), (1, colour)):
        cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thickness, cv2.LINE_AA)


def write_strip(path: Path, frames: list[np.ndarray], indices: list[int], faces: list[FrameFaces],
                tracks: Sequence[ScoredTrack] | Track | None, text: str) -> None:
    """PNG of up to :data:`STRIP_FRAMES` frames side by side (each ``STRIP_HEIGHT`` px high), each scored
    track's face box drawn where it has one (red for a FAKE track, green otherwise, its probability next to
    the box) and ``text`` (the verdict) + frame index on top.

    ``frames``: (H, W, 3) uint8 RGB, one per sampled index in ``indices``; ``tracks``: ``(track, probability,
    label)`` of each scored track (the frames shown are picked from the union of their frames), or one bare
    track (boxed in the colour of ``text``'s verdict, no probability), or None (no face: any frames).
    """
    if isinstance(tracks, Track):
        tracks = [(tracks, None, "FAKE" if text.startswith("FAKE") else "REAL")]
    tracks = list(tracks or [])
    positions = sorted({pos for track, _, _ in tracks for pos in track.members}) or list(range(len(frames)))
    picks = [positions[i] for i in sorted(set(np.linspace(0, len(positions) - 1, STRIP_FRAMES).round().astype(int)))]
    tiles = []
    for pos in picks:
        height, width = frames[pos].shape[:2]
        scale = STRIP_HEIGHT / height
        tile = cv2.resize(cv2.cvtColor(frames[pos], cv2.COLOR_RGB2BGR), (max(1, round(width * scale)), STRIP_HEIGHT),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        boxed = [(track, p, label) for track, p, label in tracks if pos in track.members]
        for track, _, label in boxed:  # every box first, then the numbers: a box never hides a number
            x1, y1, x2, y2 = (faces[pos].boxes[track.members[pos]] * scale).round().astype(int).tolist()
            cv2.rectangle(tile, (x1, y1), (x2, y2), FAKE_BGR if label == "FAKE" else REAL_BGR, 2)
        for track, p, label in boxed:
            if p is None:
                continue
            x1, y1, _, y2 = (faces[pos].boxes[track.members[pos]] * scale).round().astype(int).tolist()
            y = y1 - 5 if y1 >= 34 else min(y2 + 15, STRIP_HEIGHT - 4)  # above the box, below the verdict line
            _outlined(tile, f"{p:.3f}", (max(x1, 0), y), FAKE_BGR if label == "FAKE" else REAL_BGR, 0.45)
        _outlined(tile, f"#{indices[pos]} {text}", (4, 18), (255, 255, 255))
        tiles.append(tile)
    ok, png = cv2.imencode(path.suffix or ".png", cv2.hconcat(tiles))
    if not ok:
        raise OSError(f"{path}: cannot encode the image")
    atomic_write(path, lambda f: f.write(png.tobytes()))  # never a half-written strip (Ctrl-C, full disk)
