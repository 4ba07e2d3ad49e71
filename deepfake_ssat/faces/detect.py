"""Face detection on frame batches (MTCNN, :mod:`.mtcnn`), tracks linked over the sampled frames, square crop boxes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class FrameFaces:
    """Faces found in one frame, in full-resolution pixels.

    ``boxes`` (n, 4) x1, y1, x2, y2; ``scores`` (n,); ``landmarks`` (n, 5, 2) x, y (eyes, nose, mouth).
    """
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> "FrameFaces":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)


DEFAULT_THRESHOLDS = (0.8, 0.9, 0.9)  # P-, R-, O-Net; a face is kept at O-Net probability > 0.9


def smallest_face(width: int, height: int, min_face_size: int, min_face_fraction: float) -> float:
    """Pixels of the smallest face searched in a ``width`` x ``height`` frame: ``min_face_fraction`` of its shorter
    side, never below ``min_face_size`` (1080p at the defaults 0.05 / 20: 54 px; 720p: 36; 480p: 24)."""
    return max(float(min_face_size), min_face_fraction * min(width, height))


class FaceDetector:
    """MTCNN (every face kept) on batches of frames, searched down to :func:`smallest_face`; the scan runs on a
    small image pyramid, the two judging stages on full-resolution crops (:mod:`.mtcnn`), so small, dim faces in
    1080p frames are judged on all their pixels. Boxes are in frame pixels.

    ``thresholds``: the three stages' probabilities a face must exceed. :attr:`last_rejected`: the likeliest
    candidate the last stage turned down in the last :meth:`detect` call (x1, y1, x2, y2, probability), or None.
    """

    def __init__(self, device: str = "cpu", min_face_size: int = 20, min_face_fraction: float = 0.05,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, batch_size: int = 16) -> None:
        from .mtcnn import Cascade

        self.min_face_size, self.min_face_fraction = min_face_size, min_face_fraction
        self.batch_size = batch_size
        self.cascade = Cascade(device, thresholds)
        self.last_rejected: np.ndarray | None = None

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        """Faces in each of ``frames`` ((H, W, 3) uint8 RGB, all one size); boxes in frame pixels."""
        self.last_rejected = None
        if len(frames) == 0:
            return []
        height, width = frames[0].shape[:2]
        smallest = smallest_face(width, height, self.min_face_size, self.min_face_fraction)
        found: list[FrameFaces] = []
        for start in range(0, len(frames), self.batch_size):
            batch = np.stack(frames[start:start + self.batch_size])
            boxes, landmarks = self.cascade(batch, smallest)
            found += [FrameFaces(b[:, :4].copy(), b[:, 4].copy(), lm) for b, lm in zip(boxes, landmarks)]
            rejected = self.cascade.best_rejected()
            if rejected is not None and (self.last_rejected is None or rejected[4] > self.last_rejected[4]):
                self.last_rejected = rejected
        return found


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (n, m) between boxes ``a`` (n, 4) and ``b`` (m, 4), x1, y1, x2, y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    """One face followed over the sampled frames: ``members`` maps frame position -> detection index."""
    id: int
    members: dict[int, int]
    last_box: np.ndarray

    def mean_area(self, faces: list[FrameFaces]) -> float:
        boxes = np.stack([faces[p].boxes[d] for p, d in self.members.items()])
        return float(((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).mean())


def centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) distance between box centres of ``a`` (n, 4) and ``b`` (m, 4), in units of the larger
    box side of each pair; ``inf`` where the two box sizes differ by more than 2x."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    centre_a, centre_b = (a[:, :2] + a[:, 2:]) / 2, (b[:, :2] + b[:, 2:]) / 2
    side_a, side_b = (a[:, 2:] - a[:, :2]).max(1), (b[:, 2:] - b[:, :2]).max(1)
    larger = np.maximum(side_a[:, None], side_b[None, :])
    dist = np.linalg.norm(centre_a[:, None] - centre_b[None, :], axis=-1) / np.maximum(larger, 1e-9)
    return np.where(larger <= 2 * np.minimum(side_a[:, None], side_b[None, :]), dist, np.inf)


def _greedy_pairs(score: np.ndarray, accept) -> list[tuple[int, int]]:
    """(row, col) pairs taken best-score-first (highest ``score``), each row and col at most once,
    while ``accept(score)`` holds."""
    pairs, rows, cols = [], set(), set()
    for flat in np.argsort(-score, axis=None, kind="stable"):
        r, c = np.unravel_index(flat, score.shape)
        if not accept(score[r, c]):
            break
        if r not in rows and c not in cols:
            pairs.append((int(r), int(c)))
            rows.add(r)
            cols.add(c)
    return pairs


def link_tracks(faces: list[FrameFaces], iou_threshold: float = 0.2, max_jump: float = 1.0) -> list[Track]:
    """Link detections over the sampled frames (which can be far apart) into tracks.

    Each frame, detections are matched greedily to the tracks' latest boxes by IoU (> ``iou_threshold``),
    then the rest by centre distance (< ``max_jump`` box sides, sizes within 2x); a detection left
    over starts a new track.
    """
    tracks: list[Track] = []
    for pos, frame in enumerate(faces):
        if not len(frame):
            continue
        free_tracks, free_dets = list(range(len(tracks))), list(range(len(frame)))
        for metric, accept in ((box_iou, lambda v: v > iou_threshold),
                               (lambda a, b: -centre_distance(a, b), lambda v: v > -max_jump)):
            if not free_tracks or not free_dets:
                break
            score = metric(np.stack([tracks[t].last_box for t in free_tracks]), frame.boxes[free_dets])
            pairs = [(free_tracks[r], free_dets[c]) for r, c in _greedy_pairs(score, accept)]
            for t, d in pairs:
                tracks[t].members[pos] = d
                tracks[t].last_box = frame.boxes[d]
            free_tracks = [t for t in free_tracks if t not in {p[0] for p in pairs}]
            free_dets = [d for d in free_dets if d not in {p[1] for p in pairs}]
        for d in free_dets:
            tracks.append(Track(len(tracks), {pos: d}, frame.boxes[d]))
    return tracks


def main_track(tracks: list[Track], faces: list[FrameFaces]) -> Track | None:
    """The most persistent track (most frames); ties go to the largest mean box area."""
    if not tracks:
        return None
    return max(tracks, key=lambda t: (len(t.members), t.mean_area(faces)))


def square_crop_box(box: np.ndarray, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Square of side ``max(w, h) * scale`` centred on ``box`` (4,), shifted/shrunk to fit the frame.

    Returns integer ``(x1, y1, x2, y2)`` with ``x2 - x1 == y2 - y1``.
    """
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(round(min(max(box[2] - box[0], box[3] - box[1]) * scale, width, height)))
    side = max(side, 1)
    x1 = int(round(min(max(cx - side / 2, 0), width - side)))
    y1 = int(round(min(max(cy - side / 2, 0), height - side)))
    return x1, y1, x1 + side, y1 + side
