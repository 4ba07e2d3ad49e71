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
FACE_BOXES = {"astronaut": ASTRONAUT_FACE_BOX, "hopper": HOPPER_FACE_BOX}

Manipulation = Callable[[np.ndarray, float], np.ndarray]  # (512x512 RGB face image, t in [0, 1]) -> image


@dataclass(frozen=True)
class FacePath:
    """A copy of a person's photograph scaled by ``s`` with its top-left corner at ``(x, y)``.

    Moves and scales linearly from ``(x0, y0, s0)`` on the first frame to ``(x1, y1, s1)`` on the last.
    ``person``: ``astronaut`` (512x512, face ~87 px wide at ``s = 1``) or ``hopper`` (512x600, face ~181 px);
    ``turn`` in [0, 1): a profile-ish turn (the photograph squeezed in perspective, 0 = frontal);
    ``manipulation``: this person's fake (one of :data:`MANIPULATIONS`, astronaut only), else the video's.
    """
    x0: float
    y0: float
    s0: float = 1.0
    x1: float | None = None
    y1: float | None = None
    s1: float | None = None
    person: str = "astronaut"
    turn: float = 0.0
    manipulation: "Manipulation | None" = None

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
        return FACE_BOXES[self.person] * s + np.array([x, y, x, y])

    @classmethod
    def face(cls, person: str, width: float, cx: float, cy: float, move: tuple[float, float] = (0.0, 0.0),
             grow: float = 1.0, **kwargs) -> "FacePath":
        """A person whose face is ``width`` pixels wide, centred at ``(cx, cy)`` on the first frame, moving by
        ``move`` pixels and growing ``grow`` times by the last; ``kwargs``: ``turn``, ``manipulation``."""
        box = FACE_BOXES[person]
        s0 = width / (box[2] - box[0])
        centre = (box[:2] + box[2:]) / 2
        x0, y0 = cx - centre[0] * s0, cy - centre[1] * s0
        s1 = s0 * grow
        x1, y1 = cx + move[0] - centre[0] * s1, cy + move[1] - centre[1] * s1
        return cls(x0, y0, s0, x1, y1, s1, person=person, **kwargs)


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


def turned(image: np.ndarray, turn: float) -> np.ndarray:
    """``image`` squeezed horizontally in perspective by ``turn`` (0: unchanged), like a head turned aside."""
    if turn <= 0:
        return image
    h, w = image.shape[:2]
    near, far = w * (1 - turn) / 2, w * (1 + turn) / 2
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = np.float32([[near, h * 0.08 * turn], [far, 0], [far, h], [near, h * (1 - 0.08 * turn)]])
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(src, dst), (w, h), borderMode=cv2.BORDER_REPLICATE)


def _photograph(face: FacePath, t: float, manipulation: Manipulation | None) -> np.ndarray:
    """The person's photograph for ``face`` at ``t``: manipulated (its own manipulation, else the video's), turned."""
    if face.person == "hopper":
        image = grace_hopper()
    else:
        fake = face.manipulation or manipulation
        image = astronaut() if fake is None else fake(astronaut(), t)
    return turned(image, face.turn)


def degrade(frame: np.ndarray, light: float = 1.0, noise: float = 0.0, motion_blur: int = 0,
            seed: int = 0) -> np.ndarray:
    """A camera's troubles on an RGB frame: horizontal motion blur over ``motion_blur`` pixels, brightness times
    ``light`` (a dim room: ~0.3), then Gaussian sensor noise of ``noise`` grey levels (seeded by ``seed``)."""
    if motion_blur > 1:
        kernel = np.zeros((motion_blur, motion_blur), np.float32)
        kernel[motion_blur // 2, :] = 1 / motion_blur
        frame = cv2.filter2D(frame, -1, kernel)
    if light == 1 and noise == 0:
        return frame
    out = frame.astype(np.float32) * light
    if noise:
        out += np.random.default_rng(seed).standard_normal(frame.shape, dtype=np.float32) * noise
    return out.clip(0, 255).astype(np.uint8)


def render_frame(width: int, height: int, faces: Sequence[FacePath], t: float,
                 background: np.ndarray | None = None, manipulation: Manipulation | None = None,
                 light: float = 1.0, noise: float = 0.0, motion_blur: int = 0) -> np.ndarray:
    """One RGB frame ``(height, width, 3)`` uint8 with every face of ``faces`` placed at ``t``, each manipulated
    by its own or else ``manipulation`` (applied to the 512x512 face image) if given, then :func:`degrade`-d."""
    if background is None:
        frame = np.full((height, width, 3), (70, 110, 150), np.uint8)
    else:
        frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    for face in faces:
        x, y, s = face.placement(t)
        image = _photograph(face, t, manipulation)
        size = (max(1, round(image.shape[1] * s)), max(1, round(image.shape[0] * s)))
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        _paste(frame, cv2.resize(image, size, interpolation=interp), x, y)
    return degrade(frame, light, noise, motion_blur, seed=round(t * 1e6))


def write_face_video(path: str | Path, width: int, height: int, num_frames: int,
                     faces: Sequence[FacePath] = (), fps: float = 25.0, gray: bool = False,
                     background: np.ndarray | None = None, manipulation: Manipulation | None = None,
                     light: float = 1.0, noise: float = 0.0, motion_blur: int = 0) -> None:
    """Write an mp4v ``.mp4`` of ``num_frames`` frames (``height`` x ``width``) showing ``faces``.

    ``gray`` writes a single-channel (grayscale) video; ``background`` (RGB) fills the frame, default a
    flat blue-grey. Frame ``i`` shows the faces at ``t = i / (num_frames - 1)``; ``manipulation`` (one of
    :data:`MANIPULATIONS`) makes it a fake. ``light``, ``noise``, ``motion_blur``: :func:`degrade`.
    """
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height), not gray)
    if not writer.isOpened():
        raise RuntimeError(f"{path}: OpenCV cannot write an mp4v video")
    try:
        for i in range(num_frames):
            rgb = render_frame(width, height, faces, i / max(num_frames - 1, 1), background, manipulation,
                               light, noise, motion_blur)
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY if gray else cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


BACKGROUNDS = ("coffee", "chelsea", "rocket")  # skimage.data photographs, shipped with scikit-image


@lru_cache(maxsize=len(BACKGROUNDS))
def background(name: str) -> np.ndarray:
    """``skimage.data.<name>()``: a real RGB photograph (one of :data:`BACKGROUNDS`) to stand behind the people."""
    from skimage import data

    if name not in BACKGROUNDS:
        raise ValueError(f"background must be one of {BACKGROUNDS}, got {name!r}")
    return getattr(data, name)()


@dataclass(frozen=True)
class Scene:
    """A video shot under real conditions: its frame size, the people in it, the room and the camera."""
    width: int
    height: int
    faces: tuple[FacePath, ...]
    room: str | None = None   # one of BACKGROUNDS, None: flat blue-grey
    light: float = 1.0
    noise: float = 0.0
    motion_blur: int = 0

    def write(self, path: str | Path, num_frames: int, manipulation: Manipulation | None = None) -> None:
        """The scene as an mp4v video of ``num_frames`` frames (:func:`write_face_video`)."""
        write_face_video(path, self.width, self.height, num_frames, self.faces,
                         background=None if self.room is None else background(self.room), manipulation=manipulation,
                         light=self.light, noise=self.noise, motion_blur=self.motion_blur)


# DFDC-like shots (1080p / 720p, small or dim faces, two people, a turned head, motion blur, a face at the border) and
# the large moving face of the first benchmark; face widths in frame pixels.
REAL_CONDITIONS: dict[str, Scene] = {
    "dim_small_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 64, 900, 380, move=(380, -30)),),
                             room="coffee", light=0.45, noise=8),
    "small_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 60, 600, 420, move=(420, 0)),), room="chelsea"),
    "dim_small_720p": Scene(1280, 720, (FacePath.face("astronaut", 60, 700, 260, move=(260, -20)),),
                            room="rocket", light=0.4, noise=6),
    "border_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 90, 1880, 300, move=(-60, 0)),), room="coffee"),
    "two_people_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 120, 520, 420, move=(120, 0)),
                                           FacePath.face("hopper", 70, 1400, 460, move=(-80, 0))), room="rocket"),
    "turned_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 100, 900, 420, turn=0.45),), room="chelsea"),
    "motion_blur_1080p": Scene(1920, 1080, (FacePath.face("astronaut", 100, 500, 420, move=(900, 0)),), room="coffee",
                               motion_blur=15),
    "large_moving_1080p": Scene(1920, 1080, (FacePath(300, 100, 1.6, 900, 300, 1.9),)),
}
