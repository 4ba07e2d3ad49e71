"""Videos with real faces at known positions (``skimage.data.astronaut()``), for tests, benchmarks and the demo.

Fakes are made by genuinely different manipulations of the astronaut's face (see :data:`MANIPULATIONS`):
a face swap with ``grace_hopper.jpg`` (matplotlib's sample data), a blurrier autoencoder-like swap,
an expression warp of the mouth, and a re-textured mouth region. They are synthetic stand-ins for
FaceForensics++ / DFDC, not a substitute for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

# MTCNN (facenet-pytorch 2.5.3, default thresholds) on the 512x512 astronaut image: x1, y1, x2, y2,
# and on matplotlib's 512x600 grace_hopper.jpg; landmarks: eyes, nose, mouth corners (x, y).
ASTRONAUT_FACE_BOX = np.array([181.05, 62.16, 267.75, 172.05])
ASTRONAUT_MOUTH = np.array([[201.7, 139.2], [245.3, 141.9]])
HOPPER_FACE_BOX = np.array([174.4, 119.6, 355.6, 340.5])

Manipulation = Callable[[np.ndarray, float], np.ndarray]  # (512x512 RGB face image, t in [0, 1]) -> image


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


@lru_cache(maxsize=1)
def grace_hopper() -> np.ndarray:
    """matplotlib's ``grace_hopper.jpg``: (600, 512, 3) uint8 RGB, a second real face."""
    import matplotlib.cbook

    path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _soft_ellipse(shape: tuple[int, int], box: np.ndarray, shrink: float = 0.9, blur: float = 0.15) -> np.ndarray:
    """(H, W, 1) float mask: 1 inside the ellipse inscribed in ``box`` (scaled by ``shrink``), soft edge."""
    x1, y1, x2, y2 = box
    mask = np.zeros(shape, np.float32)
    centre = (round((x1 + x2) / 2), round((y1 + y2) / 2))
    axes = (round((x2 - x1) / 2 * shrink), round((y2 - y1) / 2 * shrink))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
    k = int(max(x2 - x1, y2 - y1) * blur) | 1
    return cv2.GaussianBlur(mask, (k, k), 0)[..., None]


def _colour_transfer(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``source`` with the per-channel mean/std of ``target`` inside ``mask`` (Lab space), uint8."""
    src = cv2.cvtColor(source, cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    inside = mask[..., 0] > 0.5
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-3
    out = (src - s_mean) / s_std * t_std + t_mean
    return cv2.cvtColor(out.clip(0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB)


@lru_cache(maxsize=4)
def _hopper_on_astronaut(detail: float) -> np.ndarray:
    """Grace Hopper's face warped onto the astronaut's face box, colour-matched; ``detail`` < 1 blurs it
    through a low-resolution bottleneck (an autoencoder swap's signature)."""
    base = astronaut()
    (x1, y1, x2, y2), (a1, b1, a2, b2) = HOPPER_FACE_BOX, ASTRONAUT_FACE_BOX
    scale = np.array([[(a2 - a1) / (x2 - x1), 0, 0], [0, (b2 - b1) / (y2 - y1), 0]], np.float32)
    scale[:, 2] = [a1 - x1 * scale[0, 0], b1 - y1 * scale[1, 1]]
    face = cv2.warpAffine(grace_hopper(), scale, (512, 512), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    if detail < 1:
        small = max(8, round(512 * detail))
        face = cv2.resize(cv2.resize(face, (small, small), interpolation=cv2.INTER_AREA), (512, 512),
                          interpolation=cv2.INTER_CUBIC)
    mask = _soft_ellipse((512, 512), ASTRONAUT_FACE_BOX)
    face = _colour_transfer(face, base, mask)
    return (face * mask + base * (1 - mask)).astype(np.uint8)


def face_swap(image: np.ndarray, t: float) -> np.ndarray:
    """FaceSwap-like: the other identity's face blended in with a soft mask and colour transfer."""
    return _hopper_on_astronaut(1.0)


def deepfake_swap(image: np.ndarray, t: float) -> np.ndarray:
    """Deepfakes-like: the same swap through a low-resolution bottleneck (blurred, smooth skin)."""
    return _hopper_on_astronaut(0.25)


def mouth_warp(image: np.ndarray, t: float) -> np.ndarray:
    """Face2Face-like: identity kept, the mouth opened/stretched by a smooth local warp that varies over time."""
    (mx1, my1), (mx2, my2) = ASTRONAUT_MOUTH
    cx, cy, width = (mx1 + mx2) / 2, (my1 + my2) / 2, mx2 - mx1
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    weight = np.exp(-(((xx - cx) / (0.8 * width)) ** 2 + ((yy - cy) / (0.5 * width)) ** 2))
    amount = 0.35 + 0.25 * np.sin(2 * np.pi * t)
    map_x = xx - (xx - cx) * weight * 0.2
    map_y = yy - (yy - cy) * weight * amount
    return cv2.remap(image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def mouth_retexture(image: np.ndarray, t: float) -> np.ndarray:
    """NeuralTextures-like: the mouth region re-rendered (smoothed, re-coloured, fine texture noise)."""
    (mx1, my1), (mx2, my2) = ASTRONAUT_MOUTH
    pad = 0.3 * (mx2 - mx1)
    box = np.array([mx1 - pad, min(my1, my2) - pad, mx2 + pad, max(my1, my2) + pad])
    mask = _soft_ellipse((512, 512), box, shrink=1.0, blur=0.3)
    smooth = cv2.bilateralFilter(image, 9, 60, 9).astype(np.float32)
    noise = np.random.default_rng(int(t * 1000)).normal(0, 6, image.shape[:2])[..., None]
    render = smooth * np.array([1.08, 0.93, 0.95], np.float32) + noise
    return (render * mask + image * (1 - mask)).clip(0, 255).astype(np.uint8)


MANIPULATIONS: dict[str, Manipulation] = {
    "Deepfakes": deepfake_swap,
    "Face2Face": mouth_warp,
    "FaceSwap": face_swap,
    "NeuralTextures": mouth_retexture,
}


def render_frame(width: int, height: int, faces: Sequence[FacePath], t: float,
                 background: np.ndarray | None = None, manipulation: Manipulation | None = None) -> np.ndarray:
    """One RGB frame ``(height, width, 3)`` uint8 with every face of ``faces`` placed at ``t``,
    each manipulated by ``manipulation`` (applied to the 512x512 face image) if given."""
    if background is None:
        frame = np.full((height, width, 3), (70, 110, 150), np.uint8)
    else:
        frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    face_image = astronaut() if manipulation is None else manipulation(astronaut(), t)
    for face in faces:
        x, y, s = face.placement(t)
        size = max(1, round(512 * s))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        _paste(frame, cv2.resize(face_image, (size, size), interpolation=interp), x, y)
    return frame


def write_face_video(path: str | Path, width: int, height: int, num_frames: int,
                     faces: Sequence[FacePath] = (), fps: float = 25.0, gray: bool = False,
                     background: np.ndarray | None = None, manipulation: Manipulation | None = None) -> None:
    """Write an mp4v ``.mp4`` of ``num_frames`` frames (``height`` x ``width``) showing ``faces``.

    ``gray`` writes a single-channel (grayscale) video; ``background`` (RGB) fills the frame, default a
    flat blue-grey. Frame ``i`` shows the faces at ``t = i / (num_frames - 1)``; ``manipulation`` (one of
    :data:`MANIPULATIONS`) makes it a fake.
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an mp4v video")
    try:
        for i in range(num_frames):
            rgb = render_frame(width, height, faces, i / max(num_frames - 1, 1), background, manipulation)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
