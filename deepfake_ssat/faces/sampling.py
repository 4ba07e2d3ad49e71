"""Which frames of a video to extract: uniform (DeepfakeBench) or K clips of L frames at stride s (VideoMAE)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """``count`` indices spread as ``round(linspace(0, N-1, count))``; all ``N`` frames if ``N < count``."""
    if num_frames <= count:
        return list(range(num_frames))
    return np.linspace(0, num_frames - 1, count).round().astype(int).tolist()


def clip_indices(num_frames: int, clips: int, clip_len: int, stride: int) -> list[list[int]]:
    """``clips`` clips of ``clip_len`` frames ``stride`` apart, starts spread uniformly over the video.

    A video shorter than one clip (``(clip_len - 1) * stride + 1`` frames) gives one shorter clip of
    the frames that exist at that stride.
    """
    span = (clip_len - 1) * stride + 1
    if num_frames < span:
        return [list(range(0, num_frames, stride))] if num_frames > 0 else []
    starts = sorted(set(np.linspace(0, num_frames - span, clips).round().astype(int).tolist()))
    return [[s + k * stride for k in range(clip_len)] for s in starts]


@dataclass(frozen=True)
class SamplingPolicy:
    """``clips == 0``: ``frames`` frames spread uniformly; else ``clips`` x ``clip_len`` frames at ``stride``."""
    frames: int = 32
    clips: int = 0
    clip_len: int = 16
    stride: int = 2

    def __post_init__(self) -> None:
        if min(self.frames, self.clip_len, self.stride) < 1 or self.clips < 0:
            raise ValueError(f"sampling: frames, clip_len and stride must be >= 1 and clips >= 0, got {self}")

    def requested(self) -> int:
        """How many frames the policy asks for."""
        return self.clips * self.clip_len if self.clips else self.frames

    def clip_lists(self, num_frames: int) -> list[list[int]]:
        """Frame indices grouped as clips (one group in uniform mode)."""
        if self.clips:
            return clip_indices(num_frames, self.clips, self.clip_len, self.stride)
        return [uniform_indices(num_frames, self.frames)]

    def indices(self, num_frames: int) -> list[int]:
        """Sorted unique frame indices to decode from a video of ``num_frames`` frames."""
        return sorted({i for clip in self.clip_lists(num_frames) for i in clip})

    def to_dict(self) -> dict:
        if self.clips:
            return {"mode": "clips", "clips": self.clips, "clip_len": self.clip_len, "stride": self.stride}
        return {"mode": "uniform", "frames": self.frames}
