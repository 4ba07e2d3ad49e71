"""Videos with real faces at known positions (``skimage.data.astronaut()``), for tests and benchmarks.

scikit-image is a dev dependency (``pip install -e '.[dev]'``); it is imported only when a video is written.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

# MTCNN (facenet-pytorch 2.5.3, default thresholds) on the 512x512 astronaut image: x1, y1, x2, y2.
ASTRONAUT_FACE_BOX = np.array([181.05, 62.16, 267.75, 172.05])


@dataclass(frozen=True)
class FacePath:
    """A copy of ``astronaut()`` (512x512) scaled by ``s`` with its top-left corner at ``(x, y)``.

    Moves and scales linearly from ``(x0, y0, s0)`` on the first frame to ``(x1, y1, s1)`` on the last.
    """
    x0: float
    y0: float
    s0: float = 1.0
    x1: float | None = None
    y1: float | None = None
    s1: float | None = None

    def placement(self, t: float) -> tuple[int, int, float]:
        """``(x, y, scale)`` at ``t`` in [0, 1] (0 = first frame, 1 = last)."""
        x1 = self.x0 if self.x1 is None else self.x1
        y1 = self.y0 if self.y1 is None else self.y1
        s1 = self.s0 if self.s1 is None else self.s1
        return (round(self.x0 + (x1 - self.x0) * t), round(self.y0 + (y1 - self.y0) * t),
                self.s0 + (s1 - self.s0) * t)

    def face_box(self, t: float) -> np.ndarray:
        """Expected face box ``(4,)`` x1, y1, x2, y2 in frame pixels at ``t``."""
        x, y, s = self.placement(t)
        return ASTRONAUT_FACE_BOX * s + np.array([x, y, x, y])


def _paste(frame: np.ndarray, image: np.ndarray, x: int, y: int) -> None:
    """Paste ``image`` (h, w, 3) into ``frame`` (H, W, 3) at top-left ``(x, y)``, clipped to the frame."""
    H, W = frame.shape[:2]
    h, w = image.shape[:2]
    fx0, fy0, fx1, fy1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = image[fy0 - y:fy1 - y, fx0 - x:fx1 - x]


@lru_cache(maxsize=1)
def astronaut() -> np.ndarray:
    """``skimage.data.astronaut()``: (512, 512, 3) uint8 RGB, a real face photograph."""
    from skimage import data

    return data.astronaut()


def render_frame(width: int, height: int, faces: Sequence[FacePath], t: float,
                 background: np.ndarray | None = None) -> np.ndarray:
    """One RGB frame ``(height, width, 3)`` uint8 with every face of ``faces`` placed at ``t``."""
    if background is None:
        frame = np.full((height, width, 3), (70, 110, 150), np.uint8)
    else:
        frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    for face in faces:
        x, y, s = face.placement(t)
        size = max(1, round(512 * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        _paste(frame, cv2.resize(astronaut(), (size, size), interpolation=interp), x, y)
    return frame


def write_face_video(path: str | Path, width: int, height: int, num_frames: int,
                     faces: Sequence[FacePath] = (), fps: float = 25.0, gray: bool = False,
                     background: np.ndarray | None = None) -> None:
    """Write an mp4v ``.mp4`` of ``num_frames`` frames (``height`` x ``width``) showing ``faces``.

    ``gray`` writes a single-channel (grayscale) video; ``background`` (RGB) fills the frame, default a
    flat blue-grey. Frame ``i`` shows the faces at ``t = i / (num_frames - 1)``.
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an mp4v video")
    try:
        for i in range(num_frames):
            rgb = render_frame(width, height, faces, i / max(num_frames - 1, 1), background)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
