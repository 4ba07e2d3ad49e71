"""MTCNN's three-stage cascade for video frames: a scan of small images, judgements on full-resolution crops.

The trained nets are facenet-pytorch's (P-Net 12 px, R-Net 24 px, O-Net 48 px); only the driver is ours. P-Net
scans an image pyramid whose first level puts the smallest face searched at its 12-pixel window; the levels are
made by OpenCV from the uint8 frames (the expensive part of the cascade, and it only ever sees small images).
R-Net and O-Net then judge 24 / 48 px squares cut from the **full-resolution** frames, so a 60-px face in a
1080p frame is judged on all its pixels, exactly as facenet-pytorch's own MTCNN judges it at full resolution —
not on a blurred copy, as when a whole frame is downscaled first. Box arithmetic (anchor boxes, regression,
squaring, clamping) uses facenet-pytorch's own helpers, so boxes mean what its boxes mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

PNET_WINDOW = 12    # pixels: the face size P-Net finds at each pyramid level
PYRAMID_FACTOR = 0.709  # MTCNN's scale step between pyramid levels (1/sqrt(2))
NMS_LEVEL, NMS_STAGE = 0.5, 0.7  # IoU thresholds: within a pyramid level, then per frame after each stage


def pyramid_scales(height: int, width: int, min_face: float) -> list[float]:
    """Scales of P-Net's pyramid for a ``height`` x ``width`` frame: the first one brings a face of ``min_face``
    pixels to P-Net's 12-pixel window, each next one is 0.709 times smaller, down to a shorter side of 12."""
    scale, scales = PNET_WINDOW / min_face, []
    while min(height, width) * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= PYRAMID_FACTOR
    return scales


def _shrunk(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``frames`` averaged over k x k pixel blocks, the largest whole k that keeps them at least ``size`` (w, h):
    OpenCV's area resize is ~3x faster at a whole factor, and an area resize of the result to ``size`` averages
    almost the same pixels as one straight from ``frames``."""
    height, width = frames.shape[1:3]
    k = int(min(width / size[0], height / size[1]))
    if k < 2:
        return frames
    return np.stack([cv2.resize(f, (width // k, height // k), interpolation=cv2.INTER_AREA) for f in frames])


@dataclass
class Candidates:
    """Boxes (n, 5: x1, y1, x2, y2, score) in full-resolution pixels and the frame each one is in (n,)."""
    boxes: torch.Tensor
    frame: torch.Tensor

    def __len__(self) -> int:
        return len(self.boxes)

    def take(self, keep: torch.Tensor) -> "Candidates":
        return Candidates(self.boxes[keep], self.frame[keep])


class Cascade:
    """The three MTCNN stages on a batch of equally sized frames; see the module docstring.

    ``thresholds``: the P-, R- and O-Net probabilities a face must exceed at each stage.
    """

    def __init__(self, device: str | torch.device = "cpu", thresholds: Sequence[float] = (0.6, 0.7, 0.9)) -> None:
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self.device = torch.device(device)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.pnet, self.rnet, self.onet = (net().eval().to(self.device) for net in (PNet, RNet, ONet))
        self.pnet = self.pnet.to(memory_format=torch.channels_last)  # ~1.5x faster scan on a CPU, as frames come

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, min_face: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Faces in ``frames`` (B, H, W, 3) uint8 RGB of at least ``min_face`` pixels: per frame, boxes (n, 5:
        x1, y1, x2, y2, probability) and landmarks (n, 5, 2), largest face first."""
        height, width = frames.shape[1:3]
        found = self.propose(frames, pyramid_scales(height, width, min_face))
        self.rejected = Candidates(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))
        if len(found):
            found = self.refine(frames, found)
            boxes, points = self.output(frames, found)
        else:
            boxes, points = found, torch.zeros(0, 5, 2)
        return self._per_frame(len(frames), boxes, points)

    def best_rejected(self) -> np.ndarray | None:
        """(5,) x1, y1, x2, y2, probability of the likeliest candidate O-Net turned down in the last call, or None."""
        if not len(self.rejected):
            return None
        return self.rejected.boxes[int(self.rejected.boxes[:, 4].argmax())].cpu().numpy()

    # ------------------------------------------------------------------------------------------ stages

    def propose(self, frames: np.ndarray, scales: list[float]) -> Candidates:
        """Stage 1: P-Net over the pyramid (levels chained from the frames with ``cv2.INTER_AREA``); the anchor
        boxes it accepts, merged within each level and then per frame, regressed and made square."""
        from facenet_pytorch.models.utils.detect_face import generateBoundingBox, rerec
        from torchvision.ops import batched_nms

        height, width = frames.shape[1:3]
        source, found = frames, []
        for level, scale in enumerate(scales):
            size = (int(width * scale + 1), int(height * scale + 1))
            if level == 0:
                source = _shrunk(source, size)
            source = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in source])
            reg, probs = self.pnet(self._normalised(source).contiguous(memory_format=torch.channels_last))
            boxes, frame = generateBoundingBox(reg, probs[:, 1], scale, self.thresholds[0])
            keep = batched_nms(boxes[:, :4], boxes[:, 4], frame, NMS_LEVEL)
            found.append((boxes[keep], frame[keep]))
        boxes = torch.cat([b for b, _ in found]) if found else torch.zeros(0, 9, device=self.device)
        frame = torch.cat([f for _, f in found]) if found else torch.zeros(0, dtype=torch.long, device=self.device)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], frame, NMS_STAGE)
        boxes, frame = boxes[keep], frame[keep]
        side = (boxes[:, 2:4] - boxes[:, 0:2]).repeat(1, 2)
        regressed = torch.cat([boxes[:, :4] + boxes[:, 5:9] * side, boxes[:, 4:5]], dim=1)
        return Candidates(rerec(regressed), frame)

    def refine(self, frames: np.ndarray, found: Candidates) -> Candidates:
        """Stage 2: R-Net on 24-px squares cut from the full-resolution frames."""
        from facenet_pytorch.models.utils.detect_face import bbreg, rerec
        from torchvision.ops import batched_nms

        found, crops = self._crops(frames, found, 24)
        if not len(found):
            return found
        reg, probs = self.rnet(crops)
        score = probs[:, 1]
        passed = score > self.thresholds[1]
        boxes = torch.cat([found.boxes[passed, :4], score[passed, None]], dim=1)
        frame, reg = found.frame[passed], reg[passed]
        keep = batched_nms(boxes[:, :4], boxes[:, 4], frame, NMS_STAGE)
        return Candidates(rerec(bbreg(boxes[keep], reg[keep])), frame[keep])

    def output(self, frames: np.ndarray, found: Candidates) -> tuple[Candidates, torch.Tensor]:
        """Stage 3: O-Net on 48-px squares cut from the full-resolution frames: final boxes and probabilities,
        five landmarks (n, 5, 2), merged per frame by overlap of the smaller box (MTCNN's "Min")."""
        from facenet_pytorch.models.utils.detect_face import batched_nms_numpy, bbreg

        found, crops = self._crops(frames, found, 48)
        if not len(found):
            self.rejected = found
            return found, torch.zeros(0, 5, 2)
        reg, marks, probs = self.onet(crops)
        score = probs[:, 1]
        passed = score > self.thresholds[2]
        failed = ~passed
        self.rejected = Candidates(torch.cat([found.boxes[failed, :4], score[failed, None]], dim=1),
                                   found.frame[failed])
        boxes = torch.cat([found.boxes[passed, :4], score[passed, None]], dim=1)
        frame, reg, marks = found.frame[passed], reg[passed], marks[passed]
        size = boxes[:, 2:4] - boxes[:, 0:2] + 1
        points = torch.stack([size[:, None, 0] * marks[:, :5] + boxes[:, None, 0] - 1,
                              size[:, None, 1] * marks[:, 5:] + boxes[:, None, 1] - 1], dim=2)
        boxes = bbreg(boxes, reg)
        keep = batched_nms_numpy(boxes[:, :4], boxes[:, 4], frame, NMS_STAGE, "Min")
        return Candidates(boxes[keep], frame[keep]), points[keep]

    # ------------------------------------------------------------------------------------------ helpers

    def _normalised(self, images: np.ndarray) -> torch.Tensor:
        """(B, h, w, 3) uint8 -> (B, 3, h, w) float on the device, scaled as the nets were trained."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device).permute(0, 3, 1, 2).float()
        return (x - 127.5) * 0.0078125

    def _crops(self, frames: np.ndarray, found: Candidates, size: int) -> tuple[Candidates, torch.Tensor]:
        """The candidates whose box overlaps its frame, and their boxes cut from the frames (clamped to them)
        and resized to ``size`` x ``size`` (``cv2.INTER_AREA``), normalised."""
        from facenet_pytorch.models.utils.detect_face import pad

        height, width = frames.shape[1:3]
        if not len(found):
            return found, torch.zeros(0, 3, size, size, device=self.device)
        y, ey, x, ex = pad(found.boxes, width, height)  # 1-based, clamped to the frame
        valid = np.flatnonzero((ey > y - 1) & (ex > x - 1))
        frame = found.frame.cpu().numpy()
        crops = np.stack([cv2.resize(frames[frame[k], y[k] - 1:ey[k], x[k] - 1:ex[k]], (size, size),
                                     interpolation=cv2.INTER_AREA) for k in valid]) if len(valid) else \
            np.zeros((0, size, size, 3), np.uint8)
        return found.take(torch.as_tensor(valid, device=self.device)), self._normalised(crops)

    @staticmethod
    def _per_frame(count: int, found: Candidates, points: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
        boxes, points, frame = found.boxes.cpu().numpy(), points.cpu().numpy(), found.frame.cpu().numpy()
        per_boxes, per_points = [], []
        for i in range(count):
            b, p = boxes[frame == i], points[frame == i]
            order = np.argsort(-(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), kind="stable")  # largest first
            per_boxes.append(b[order].astype(np.float32))
            per_points.append(p[order].astype(np.float32))
        return per_boxes, per_points
