"""The ``faces`` benchmark: our extraction vs naive full-resolution MTCNN (speed P3, box IoU and recall) and vs
decoding alone (P4), on the DFDC-like videos of :data:`~deepfake_ssat.synthetic.scenes.REAL_CONDITIONS`.

Every scene is written once; for each, the same uniformly sampled frames are decoded (decord ``get_batch``, best of
``repeats``), extracted by :func:`~deepfake_ssat.faces.extract.extract_video` with the extractor's defaults (best of
``repeats``) and run through facenet-pytorch's default ``MTCNN(keep_all=True)`` at full resolution one frame at a
time (once: it is slow). The naive detector is the reference:

- a *naive face* is one MTCNN gives probability >= :data:`NAIVE_PROB`;
- a sampled frame *counts* when it has a naive face; its *best* face is the **largest** naive face (the main-face
  rule of our extractor);
- ``recall``: the share of counted frames where our extraction keeps a crop whose box has IoU >= :data:`MATCH_IOU`
  with the best face; ``mean_iou_vs_naive``: the mean over counted frames of our best IoU with it (a miss counts 0);
- ``recall_every_face``: the share of all naive faces matched (IoU >= :data:`MATCH_IOU`) by any crop of an
  extraction with the same parameters but ``keep="all"`` (run once, untimed): what inference scores.

Overall values pool the counted frames (faces) of every video; seconds are summed over the videos. One JSON-able dict.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..faces.inputs import VideoItem
from ..faces.detect import box_iou
from ..faces.extract import ExtractionParams, extract_video, load_manifest
from ..faces.sampling import SamplingPolicy, uniform_indices
from ..synthetic.scenes import FACE_BOXES, REAL_CONDITIONS, Scene
from .header import run_header

NAIVE_PROB = 0.9   # a naive MTCNN face counts from this probability on
MATCH_IOU = 0.5    # a crop finds a naive face from this IoU on
GOALS = {"recall": (">=", 0.97), "recall_worst_video": (">=", 0.8), "speedup_vs_naive": (">=", 4.0),
         "mean_iou_vs_naive": (">=", 0.8), "time_over_decode": ("<=", 2.0)}
REFERENCE = (f"naive faces: default full-resolution MTCNN with probability >= {NAIVE_PROB}; a sampled frame counts "
             f"when it has one, its best face = the largest of them (our extractor's main-face rule); matched: a crop "
             f"box with IoU >= {MATCH_IOU}; recall: counted frames whose best face our extraction (default keep) "
             f"matches; recall_every_face: naive faces matched by the keep='all' extraction")

NaiveFaces = list[np.ndarray]  # per sampled frame: (n, 4) boxes of the naive faces, n >= 0


def describe(scene: Scene) -> str:
    """The people of ``scene`` (face widths in frame pixels, first -> last frame), its room and camera."""
    people = []
    for face in scene.faces:
        box = FACE_BOXES[face.person]
        w0, w1 = ((box[2] - box[0]) * face.placement(t)[2] for t in (0.0, 1.0))
        size = f"{w0:.0f} px" if abs(w1 - w0) < 1 else f"{w0:.0f}->{w1:.0f} px"
        (x0, y0, _), (x1, y1, _) = face.placement(0.0), face.placement(1.0)
        moving = ", moving" if (x0, y0) != (x1, y1) else ""
        people.append(f"{face.person} {size}{moving}" + (f", turned {face.turn:g}" if face.turn else ""))
    camera = [f"room {scene.room or 'flat'}"] + [f"{k} {v:g}" for k, v, default in
                                               (("light", scene.light, 1.0), ("noise", scene.noise, 0.0),
                                                ("motion blur", scene.motion_blur, 0)) if v != default]
    return "; ".join(people + camera)


def _decode_only(path: Path, indices: list[int]) -> float:
    """Seconds to open ``path`` with decord and ``get_batch`` ``indices`` to numpy."""
    import decord

    start = time.perf_counter()
    decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()
    return time.perf_counter() - start


def _naive(mtcnn: Any, path: Path, indices: list[int]) -> tuple[float, NaiveFaces]:
    """The naive way: decode with ``get_batch``, full-resolution MTCNN one frame at a time.

    Returns seconds and, per frame, the boxes (n, 4) of the faces with probability >= :data:`NAIVE_PROB`.
    """
    import decord

    start = time.perf_counter()
    frames = decord.VideoReader(str(path), ctx=decord.cpu(0)).get_batch(indices).asnumpy()
    found = [mtcnn.detect(frame) for frame in frames]
    seconds = time.perf_counter() - start
    faces = []
    for boxes, probs in found:
        if boxes is None:
            faces.append(np.zeros((0, 4)))
        else:
            faces.append(np.asarray(boxes, np.float64)[np.asarray(probs, np.float64) >= NAIVE_PROB].reshape(-1, 4))
    return seconds, faces


def _extract(path: Path, out: Path, name: str, params: ExtractionParams, detector: Any) -> tuple[float, dict]:
    """Seconds for :func:`extract_video` (decode, detect, track, crop, write) and its manifest."""
    shutil.rmtree(out, ignore_errors=True)
    item = VideoItem(path, f"bench/{name}", "bench", name)
    start = time.perf_counter()
    record = extract_video(item, out, params, detector)
    seconds = time.perf_counter() - start
    manifest = load_manifest(out / item.rel_dir / "manifest.json")
    if record["status"] != "ok" or manifest is None:
        raise RuntimeError(f"benchmark video {name} not extracted: {record}")
    return seconds, manifest


def _crop_boxes(manifest: dict[str, Any]) -> dict[int, np.ndarray]:
    """Frame index -> (n, 4) boxes of the manifest's crops on that frame."""
    boxes: dict[int, list] = {}
    for crop in manifest["crops"]:
        boxes.setdefault(int(crop["frame"]), []).append(crop["box"])
    return {frame: np.asarray(b, np.float64).reshape(-1, 4) for frame, b in boxes.items()}


def best_face(boxes: np.ndarray) -> np.ndarray | None:
    """The largest of the naive face boxes (n, 4), or None for none."""
    if len(boxes) == 0:
        return None
    return boxes[int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))]


def score_video(naive: NaiveFaces, ours: dict[str, Any], every: dict[str, Any], indices: list[int]) -> dict[str, Any]:
    """Our extraction (``ours``, default keep) and the ``keep="all"`` one (``every``) vs the naive faces per sampled
    frame: per counted frame the best IoU with the best face, per naive face whether any ``every`` crop matches."""
    crops, all_crops = _crop_boxes(ours), _crop_boxes(every)
    ious, missed, faces_matched = [], [], 0
    for frame, boxes in zip(indices, naive):
        best = best_face(boxes)
        if best is not None:
            mine = crops.get(frame)
            iou = 0.0 if mine is None else float(box_iou(best, mine).max())
            ious.append(iou)
            if iou < MATCH_IOU:
                missed.append(frame)
        if len(boxes) and frame in all_crops:
            faces_matched += int((box_iou(boxes, all_crops[frame]).max(axis=1) >= MATCH_IOU).sum())
    faces_naive = sum(len(b) for b in naive)
    counted = len(ious)
    return {
        "frames_counted": counted, "frames_matched": counted - len(missed),
        "faces_naive": faces_naive, "faces_matched": faces_matched,
        "iou_sum": float(np.sum(ious)), "missed_frames": missed,
        "frames_with_face_ours": sum(frame in crops for frame in indices),
        "frames_with_face_naive": counted,
    }


def _share(part: float, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _goals(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    goals = {}
    for key, (op, target) in GOALS.items():
        value = result[key]
        met = value is not None and (value >= target if op == ">=" else value <= target)
        goals[key] = {"value": value, "goal": f"{op} {target:g}", "met": bool(met)}
    return goals


def run_faces_benchmark(scenes: Sequence[str] | None = None, num_frames: int = 120, frames: int = 16,
                        repeats: int = 3, device: str = "cpu", params: ExtractionParams | None = None,
                        command: str | None = None) -> dict[str, Any]:
    """Write each of ``scenes`` (names of :data:`REAL_CONDITIONS`, default all) as a ``num_frames``-frame video and,
    for the same ``frames`` uniformly sampled frames of each, time decode only (best of ``repeats``), our extraction
    with ``params`` (default: the extractor's defaults sampling ``frames`` frames; best of ``repeats``) and the naive
    way (once), and score recall and IoU against the naive faces (module docstring). Returns a JSON-able dict.

    Raises ValueError for an unknown scene name.
    """
    names = list(REAL_CONDITIONS) if scenes is None else list(scenes)
    unknown = [n for n in names if n not in REAL_CONDITIONS]
    if unknown or not names:
        raise ValueError(f"unknown scene {', '.join(map(repr, unknown)) or '(none given)'}; known: "
                         f"{', '.join(REAL_CONDITIONS)}")
    if num_frames < 1 or frames < 1 or repeats < 1:
        raise ValueError("num_frames, frames and repeats must be positive")
    from facenet_pytorch import MTCNN

    params = params or ExtractionParams(SamplingPolicy(frames=frames))
    every_params = dataclasses.replace(params, keep="all")
    indices = uniform_indices(num_frames, frames)
    detector = params.detector(device)
    detector.detect(np.zeros((1, 64, 64, 3), np.uint8))  # warm-up, untimed
    mtcnn = MTCNN(keep_all=True, device=device)
    mtcnn.detect(np.zeros((64, 64, 3), np.uint8))  # warm-up, untimed
    videos, totals, iou_sum = [], {"decode": 0.0, "ours": 0.0, "naive": 0.0}, 0.0
    with tempfile.TemporaryDirectory(prefix="faces-bench-") as tmp:
        for name in names:
            scene, video, out = REAL_CONDITIONS[name], Path(tmp) / f"{name}.mp4", Path(tmp) / "out"
            scene.write(video, num_frames)
            decode = min(_decode_only(video, indices) for _ in range(repeats))
            ours, manifest = min((_extract(video, out, name, params, detector) for _ in range(repeats)),
                                 key=lambda run: run[0])
            _, every = _extract(video, out, name, every_params, detector)
            naive, naive_faces = _naive(mtcnn, video, indices)
            video.unlink()
            score = score_video(naive_faces, manifest, every, indices)
            totals["decode"] += decode
            totals["ours"] += ours
            totals["naive"] += naive
            videos.append({
                "name": name, "width": scene.width, "height": scene.height, "face": describe(scene),
                "decode_seconds": round(decode, 3), "ours_seconds": round(ours, 3), "naive_seconds": round(naive, 3),
                "speedup_vs_naive": round(naive / ours, 2),
                "mean_iou_vs_naive": _share(score["iou_sum"], score["frames_counted"]),
                "recall": _share(score["frames_matched"], score["frames_counted"]),
                "recall_every_face": _share(score["faces_matched"], score["faces_naive"]),
                "time_over_decode": round(ours / decode, 3),
                **{k: v for k, v in score.items() if k != "iou_sum"},
            })
            iou_sum += score["iou_sum"]
    result = {
        **run_header("faces", command, device), "torch_threads": torch.get_num_threads(),
        "params": params.to_dict(),
        "video_frames": num_frames, "sampled_frames": len(indices), "codec": "mp4v",
        "reference": REFERENCE,
        **_overall(videos, totals, iou_sum),
        "videos": videos,
        "timing": f"per video: decode and ours best of {repeats}, naive once (decode included in ours and naive); "
                  f"keep='all' extraction untimed; overall: sums over the videos",
    }
    result["goals"] = _goals(result)
    return result


def _overall(videos: list[dict[str, Any]], totals: dict[str, float], iou_sum: float) -> dict[str, Any]:
    """The benchmark's overall figures: times summed over the videos, recall over every counted frame and every
    naive face, and the worst video of each."""
    counted = sum(v["frames_counted"] for v in videos)
    faces_naive = sum(v["faces_naive"] for v in videos)
    scored = [v for v in videos if v["recall"] is not None]
    worst = min(scored, key=lambda v: v["recall"]) if scored else None
    scored_every = [v for v in videos if v["recall_every_face"] is not None]
    worst_every = min(scored_every, key=lambda v: v["recall_every_face"]) if scored_every else None
    return {
        "decode_seconds": round(totals["decode"], 3), "ours_seconds": round(totals["ours"], 3),
        "naive_seconds": round(totals["naive"], 3),
        "speedup_vs_naive": round(totals["naive"] / totals["ours"], 2),
        "mean_iou_vs_naive": _share(iou_sum, counted),
        "time_over_decode": round(totals["ours"] / totals["decode"], 3),
        "recall": _share(sum(v["frames_matched"] for v in videos), counted),
        "recall_worst_video": None if worst is None else worst["recall"],
        "recall_worst_video_name": None if worst is None else worst["name"],
        "recall_every_face": _share(sum(v["faces_matched"] for v in videos), faces_naive),
        "recall_every_face_worst_video": None if worst_every is None else worst_every["recall_every_face"],
        "recall_every_face_worst_video_name": None if worst_every is None else worst_every["name"],
        "frames_counted": counted, "faces_naive": faces_naive,
    }


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_faces(result: dict[str, Any]) -> str:
    """A short text summary of :func:`run_faces_benchmark`: the overall line, one line per video, the goals."""
    lines = [f"faces: recall {_fmt(result['recall'])} (worst {_fmt(result['recall_worst_video'])} "
             f"{result['recall_worst_video_name']}), every face {_fmt(result['recall_every_face'])}, "
             f"IoU {_fmt(result['mean_iou_vs_naive'])}, ours {result['ours_seconds']:.2f}s vs naive "
             f"{result['naive_seconds']:.2f}s (x{result['speedup_vs_naive']:.2f}), decode only "
             f"{result['decode_seconds']:.2f}s (ours/decode {result['time_over_decode']:.2f}); "
             f"{result['sampled_frames']} frames of {len(result['videos'])} videos"]
    for v in result["videos"]:
        lines.append(f"  {v['name']:<20} recall {_fmt(v['recall'])} every face {_fmt(v['recall_every_face'])} "
                     f"IoU {_fmt(v['mean_iou_vs_naive'])} x{v['speedup_vs_naive']:.2f} "
                     f"ours/decode {v['time_over_decode']:.2f} faces {v['frames_with_face_ours']}/"
                     f"{v['frames_with_face_naive']} frames")
    lines.append("goals: " + ", ".join(f"{k} {_fmt(g['value'], '.3g')} {g['goal']} {'met' if g['met'] else 'NOT met'}"
                                       for k, g in result["goals"].items()))
    return "\n".join(lines)
