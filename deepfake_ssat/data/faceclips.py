"""Face-clip datasets over extracted face crops (DFDC, FaceForensics++, Celeb-DF v2): training never decodes video.

Reads each video's ``manifest.json`` (through ``index.jsonl`` where it is current) and its square crops; items
are ``(clip [C, T, H, W] float, label, key)``, label 1 = fake (:class:`FaceClipDataset`, :func:`video_key`).
Clip geometry and pixels: :mod:`.transforms`; which videos form train / val / test: :mod:`.splits`.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import ConfigError
from ..faces.datasets import IDENTITY_FIELDS
from ..io import find_files
from .transforms import ClipAugmentation, centre_resize, clip_positions, clip_span, clip_tensor


class DatasetError(ConfigError):
    """Extracted data that cannot be used as configured; one line naming the file or key."""


@dataclass(frozen=True)
class FaceVideo:
    """One extracted video: its identity, label and the stored crops usable as clips.

    ``segments``: runs of ``(frame index, crop file)`` of one face track, in frame order.
    """
    key: str
    label: int
    dir: Path
    segments: tuple[tuple[tuple[int, str], ...], ...]
    dataset: str
    method: str | None
    compression: str | None
    video_id: str
    part: str | None
    original: str | None
    group: str | None = None  # a video list's group (identity / source video)
    split: str | None = None  # a video list's fixed split

    def num_crops(self) -> int:
        return sum(len(s) for s in self.segments)


def video_key(dataset: str | None, method: str | None, compression: str | None, video_id: str) -> str:
    """``dataset/method/compression/video_id`` (``-`` for an absent field): names the video for video-level
    metrics, so ``Deepfakes/000_003`` and ``Face2Face/000_003`` never merge."""
    return "/".join(v or "-" for v in (dataset, method, compression, video_id))


# ---------------------------------------------------------------------------------------------
# Reading an extraction root


def _read_rows(root: Path) -> list[dict]:
    """One row per finished video: from ``index.jsonl`` where it lists the folder, else from its manifest.

    Every ``manifest.json`` under ``root`` is found, so a video missing from a stale index (e.g. two
    extraction shards finishing together) is still used.
    """
    indexed: dict[str, dict] = {}
    index = root / "index.jsonl"
    if index.is_file():
        for n, line in enumerate(index.read_text().splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                    indexed[row["dir"]] = row
                except (ValueError, KeyError, TypeError):
                    raise DatasetError(f"{index}: line {n} is not an index row; delete the file "
                                       f"(it is rebuilt from the manifests)") from None
    rows = []
    for manifest in find_files(root, "manifest.json"):
        rel = manifest.parent.relative_to(root).as_posix()
        row = indexed.get(rel)
        if row is None or "params" not in row:  # not indexed, or an index from an older version
            try:
                m = json.loads(manifest.read_text())
            except (OSError, ValueError) as e:
                raise DatasetError(f"{manifest}: unreadable manifest ({e}); re-run tools/extract_faces.py "
                                   f"on that video") from None
            if m.get("tool") != "deepfake_ssat.faces":
                continue
            crops = m.get("crops", [])
            row = {k: m.get(k) for k in (*IDENTITY_FIELDS, "status", "clips", "params")}
            row.update(dir=rel, frames=[c["frame"] for c in crops], files=[c["file"] for c in crops],
                       tracks=[c["track"] for c in crops])
        rows.append(row)
    return rows


def _segments(row: dict) -> tuple[tuple[tuple[int, str], ...], ...]:
    """Crops grouped by track, then by extraction clip (``--clips`` mode), each in frame order."""
    by_track: dict[int, list[tuple[int, str]]] = {}
    for frame, file, track in zip(row["frames"], row["files"], row["tracks"]):
        by_track.setdefault(track, []).append((frame, file))
    segments = []
    for crops in by_track.values():
        crops.sort()
        groups = [set(c) for c in row["clips"]] if row.get("clips") else [None]
        for group in groups:
            seg = tuple(c for c in crops if group is None or c[0] in group)
            if seg:
                segments.append(seg)
    return tuple(segments)


def scan_extraction(root: str | Path, num_frames: int, frame_step: int,
                    img_size: int) -> tuple[list[FaceVideo], Counter]:
    """Every usable video under ``root``, and counts of the videos left out by status (``no_face``,
    ``unreadable``, ``unlabelled``, ...) and of the ``padded`` ones.

    Raises :class:`DatasetError` when ``root`` holds no extraction, when its crops are smaller than
    ``img_size``, when the extraction stored fewer frames per video (or per clip) than a clip of
    ``num_frames`` frames ``frame_step`` apart needs, or when videos were extracted with different
    parameters. A single video that is merely short (faces missing in some frames) is padded by
    repeating its last frame and counted as ``padded``.
    """
    root = Path(root)
    rows = _read_rows(root)
    if not rows:
        raise DatasetError(f"data.root: {root} holds no extracted faces (no manifest.json); run "
                           f"tools/extract_faces.py <videos> --out {root} first")
    span = clip_span(num_frames, frame_step)
    counts: Counter = Counter()
    reference: dict | None = None
    videos = []
    for row in rows:
        if row.get("status") != "ok" or not row["files"]:
            counts[row.get("status") or "unknown"] += 1
            continue
        if row.get("label") not in (0, 1):
            counts["unlabelled"] += 1
            continue
        params = row["params"]
        if reference is None:
            reference = {"dir": row["dir"], "params": params}
            _check_params(root / row["dir"], params, span, num_frames, frame_step, img_size)
        elif params != reference["params"]:
            raise DatasetError(
                f"data.root: {root / row['dir']} and {root / reference['dir']} were extracted with different "
                f"parameters; extract every video of a dataset with the same settings")
        segments = _segments(row)
        if max(len(s) for s in segments) < span:
            counts["padded"] += 1
        videos.append(FaceVideo(
            key=video_key(row["dataset"], row["method"], row["compression"], row["video_id"]),
            label=int(row["label"]), dir=root / row["dir"], segments=segments, dataset=row["dataset"],
            method=row["method"], compression=row["compression"], video_id=row["video_id"], part=row["part"],
            original=row["original"], group=row.get("group"), split=row.get("split")))
    return videos, counts


def _check_params(manifest_dir: Path, params: dict, span: int, num_frames: int, frame_step: int,
                  img_size: int) -> None:
    where = manifest_dir / "manifest.json"
    if params["crop_size"] < img_size:
        raise DatasetError(
            f"{where}: crops are {params['crop_size']} px but model.img_size is {img_size}; re-extract with "
            f"--size {img_size} or lower model.img_size")
    sampling = params["sampling"]
    stored = sampling["clip_len"] if sampling["mode"] == "clips" else sampling["frames"]
    if stored < span:
        what = "frames per clip" if sampling["mode"] == "clips" else "frames per video"
        raise DatasetError(
            f"{where}: extraction stored {stored} {what} but a clip of model.num_frames={num_frames} with "
            f"data.frame_step={frame_step} needs {span}; re-extract with more frames or lower them")


def read_crop(path: Path) -> np.ndarray:
    """A stored face crop as (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot read face crop (missing or corrupt); re-run tools/extract_faces.py "
                           f"on that video")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FaceClipDataset(Dataset):
    """Clips of face crops -> ``(clip [C, T, H, W] float32 normalised, label, key)``.

    ``train=True``: one item per video, a random segment and start per draw. ``train=False``:
    ``eval_clips`` fixed clips per video (evenly spread over all valid starts), one item each.

    A clip is ``num_frames`` crops of one face track, ``frame_step`` stored frames apart, inside one
    extraction segment (a ``--clips`` extraction stores several separate runs of frames; uniform
    extraction stores one). ``key`` is :func:`video_key`.
    """

    def __init__(self, videos: list[FaceVideo], img_size: int, num_frames: int, frame_step: int = 1,
                 train: bool = True, augment: bool = True, eval_clips: int = 4):
        self.videos = videos
        self.img_size, self.num_frames, self.frame_step, self.train = img_size, num_frames, frame_step, train
        self.augment = ClipAugmentation(img_size) if train and augment else None
        if train:
            self.items = [(i, -1, -1) for i in range(len(videos))]
        else:
            self.items = [(i, s, p) for i, v in enumerate(videos) for s, p in self._eval_starts(v, eval_clips)]
        self.labels = [videos[i].label for i, _, _ in self.items]

    def _eval_starts(self, video: FaceVideo, count: int) -> list[tuple[int, int]]:
        span = clip_span(self.num_frames, self.frame_step)
        windows = [(s, p) for s, seg in enumerate(video.segments) for p in range(max(len(seg) - span, 0) + 1)]
        picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
        return [windows[i] for i in sorted(set(picks.tolist()))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        v, seg, start = self.items[index]
        video = self.videos[v]
        span = clip_span(self.num_frames, self.frame_step)
        if seg < 0:  # training draw: a segment (by length) and a start, from the seeded global RNG
            lengths = [len(s) for s in video.segments]
            seg = random.choices(range(len(lengths)), weights=lengths)[0]
            start = random.randint(0, max(lengths[seg] - span, 0))
        segment = video.segments[seg]
        frames = np.stack([read_crop(video.dir / segment[p][1])
                           for p in clip_positions(len(segment), self.num_frames, self.frame_step, start)])
        frames = self.augment(frames) if self.augment else centre_resize(frames, self.img_size)
        return clip_tensor(frames), video.label, video.key

    def manifest(self) -> list[dict]:
        """What this split reads, hashed into the run: per video its key, label, number of crops and a
        digest of the crop list (segments, frame indices, files) — a few dozen bytes per video."""
        return [{"key": v.key, "label": v.label, "crops": v.num_crops(),
                 "crops_sha1": hashlib.sha1(json.dumps(v.segments).encode()).hexdigest()} for v in self.videos]

    def describe(self) -> str:
        fake = sum(v.label for v in self.videos)
        n = len(self.videos)
        return (f"{n} videos ({n - fake} real, {fake} fake, {100.0 * fake / max(n, 1):.0f}% fake), "
                f"{len(self)} clips")


def manifest_sha256(entries: dict[str, list[dict]]) -> str:
    """Hash of what each split reads (keys, labels, crop files): equal hashes = same data."""
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
