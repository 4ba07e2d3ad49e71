"""MTCNN face detection on downscaled frame batches, boxes mapped to full resolution, IoU tracks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
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


def detection_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(w, h)`` of a frame downscaled so that its longer side is at most ``max_side`` (never upscaled)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class FaceDetector:
    """facenet-pytorch MTCNN (keep all faces) run in batches on frames downscaled to ``max_side``.

    ``min_face_size`` is in pixels of the downscaled frame; ``thresholds`` are MTCNN's three stage
    thresholds (default: the DFDC winner's).
    """

    def __init__(self, device: str = "cpu", max_side: int = 640, min_face_size: int = 40,
                 thresholds: Sequence[float] = (0.85, 0.95, 0.95), batch_size: int = 32) -> None:
        from facenet_pytorch import MTCNN

        self.max_side = max_side
        self.batch_size = batch_size
        self.mtcnn = MTCNN(keep_all=True, device=device, min_face_size=min_face_size,
                           thresholds=list(thresholds), post_process=False)

    def detect(self, frames: Sequence[np.ndarray]) -> list[FrameFaces]:
        """Faces in each of ``frames`` ((H, W, 3) uint8 RGB, all one size); boxes in full-resolution pixels."""
        if len(frames) == 0:
            return []
        height, width = frames[0].shape[:2]
        w, h = detection_size(width, height, self.max_side)
        small = np.stack([f if (w, h) == (width, height) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
                          for f in frames])
        factor = np.array([width / w, height / h], np.float32)
        found: list[FrameFaces] = []
        for start in range(0, len(small), self.batch_size):
            found += self._detect_batch(small[start:start + self.batch_size], factor)
        return found

    def _detect_batch(self, batch: np.ndarray, factor: np.ndarray) -> list[FrameFaces]:
        """MTCNN on ``batch`` (B, h, w, 3); coordinates scaled by ``factor`` (2,) = (sx, sy)."""
        try:
            boxes, scores, landmarks = self.mtcnn.detect(batch, landmarks=True)
        except (RuntimeError, ValueError) as e:
            # facenet-pytorch builds an empty image pyramid for frames smaller than min_face_size
            # and then fails in torch.cat (RuntimeError or ValueError by torch version): such a
            # frame cannot hold a face of the minimum size.
            if "non-empty list" in str(e):
                return [FrameFaces.empty() for _ in batch]
            raise
        found = []
        for b, s, lm in zip(boxes, scores, landmarks):
            if b is None:
                found.append(FrameFaces.empty())
                continue
            b = np.asarray(b, np.float32).reshape(-1, 4) * np.tile(factor, 2)
            lm = np.asarray(lm, np.float32).reshape(-1, 5, 2) * factor
            found.append(FrameFaces(b, np.asarray(s, np.float32).reshape(-1), lm))
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
