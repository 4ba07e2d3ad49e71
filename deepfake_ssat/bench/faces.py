"""The ``faces`` benchmark: our extraction vs naive full-resolution MTCNN (P3) and vs decoding alone (P4).

A 1080p video of a real face moving and scaling is written once; the same uniformly sampled frames are decoded,
extracted by :func:`~deepfake_ssat.faces.extract.extract_video` and run through MTCNN frame by frame, and our
boxes are scored by IoU against MTCNN's. One JSON-able dict.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..faces.datasets import VideoItem
from ..faces.detect import box_iou
from ..faces.extract import ExtractionParams, extract_video, load_manifest
from ..faces.sampling import SamplingPolicy, uniform_indices
from ..faces.synthetic import FacePath, write_face_video


def bench_face(width: int) -> FacePath:
    """The benchmark's moving face, laid out for 1920-wide frames and scaled to ``width``."""
    k = width / 1920
    return FacePath(300 * k, 100 * k, 1.6 * k, 900 * k, 300 * k, 1.9 * k)


def _decode_only(path: Path, indices: list[int]) -> float:
    """Seconds to open ``path`` with decord and ``get_batch`` ``indices`` to numpy."""
    import decord

    start = time.perf_counter()
    decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()
    return time.perf_counter() - start


def _naive(path: Path, indices: list[int], device: str) -> tuple[float, list[np.ndarray | None]]:
    """The naive way: decode with ``get_batch``, full-resolution default MTCNN one frame at a time.

    Returns seconds and, per frame, the largest box (4,) or None.
    """
    import decord
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=device)
    mtcnn.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up, untimed
    start = time.perf_counter()
    frames = decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()
    found = [mtcnn.detect(frame)[0] for frame in frames]
    seconds = time.perf_counter() - start
    largest = [None if b is None else max(b, key=lambda x: (x[2] - x[0]) * (x[3] - x[1])) for b in found]
    return seconds, largest


def _ours(path: Path, out: Path, params: ExtractionParams, device: str) -> tuple[float, dict[str, Any]]:
    """Seconds for :func:`extract_video` (decode, detect, track, crop, write) and its manifest."""
    detector = params.detector(device)
    detector.detect(np.zeros((1, 64, 64, 3), np.uint8))  # warm-up, untimed
    shutil.rmtree(out, ignore_errors=True)
    item = VideoItem(path, "bench/video", "bench", "video")
    start = time.perf_counter()
    record = extract_video(item, out, params, detector)
    seconds = time.perf_counter() - start
    if record["status"] != "ok":
        raise RuntimeError(f"benchmark video not extracted: {record}")
    return seconds, load_manifest(out / item.rel_dir / "manifest.json")


def mean_iou(reference: list[np.ndarray | None], manifest: dict[str, Any], indices: list[int]) -> float:
    """Mean IoU of our box vs the reference box over frames where the reference found a face
    (a frame we missed counts 0)."""
    ours = {c["frame"]: np.array(c["box"]) for c in manifest["crops"]}
    ious = [float(box_iou(ref, ours[i])[0, 0]) if i in ours else 0.0
            for i, ref in zip(indices, reference) if ref is not None]
    return float(np.mean(ious)) if ious else 0.0


def run_faces_benchmark(width: int = 1920, height: int = 1080, num_frames: int = 300, frames: int = 32,
                        repeats: int = 3, device: str = "cpu", params: ExtractionParams | None = None,
                        command: str | None = None) -> dict[str, Any]:
    """Write a ``width``x``height`` ``num_frames``-frame video of a moving real face and time, for the
    same ``frames`` uniformly sampled frames: decode only (best of ``repeats``), our extraction (best of
    ``repeats``) and the naive way (once: it is slow). Returns a JSON-able dict."""
    params = params or ExtractionParams(SamplingPolicy(frames=frames))
    indices = uniform_indices(num_frames, frames)
    with tempfile.TemporaryDirectory(prefix="faces-bench-") as tmp:
        video = Path(tmp) / "face.mp4"
        write_face_video(video, width, height, num_frames, [bench_face(width)])
        decode = min(_decode_only(video, indices) for _ in range(repeats))
        runs = [_ours(video, Path(tmp) / "out", params, device) for _ in range(repeats)]
        ours, manifest = min(runs, key=lambda r: r[0])
        naive, naive_boxes = _naive(video, indices, device)
    return {
        "benchmark": "faces",
        "video": {"width": width, "height": height, "frames": num_frames, "codec": "mp4v",
                  "face": "skimage astronaut, moving + scaling"},
        "sampled_frames": frames, "device": device, "torch_threads": torch.get_num_threads(),
        "params": params.to_dict(),
        "decode_seconds": round(decode, 3), "ours_seconds": round(ours, 3), "naive_seconds": round(naive, 3),
        "speedup_vs_naive": round(naive / ours, 2),
        "mean_iou_vs_naive": round(mean_iou(naive_boxes, manifest, indices), 4),
        "time_over_decode": round(ours / decode, 3),
        "faces_ours": len(manifest["crops"]), "faces_naive": sum(b is not None for b in naive_boxes),
        "timing": f"decode and ours: best of {repeats}; naive: once",
        "command": command,
    }


def format_faces(result: dict[str, Any]) -> str:
    """One-line text summary of :func:`run_faces_benchmark`."""
    return (f"faces: ours {result['ours_seconds']:.2f}s, naive {result['naive_seconds']:.2f}s "
            f"(x{result['speedup_vs_naive']:.2f}, IoU {result['mean_iou_vs_naive']:.3f}), decode only "
            f"{result['decode_seconds']:.2f}s (ours/decode {result['time_over_decode']:.2f}) "
            f"for {result['sampled_frames']} frames of {result['video']['width']}x{result['video']['height']}")
