"""Face-clip datasets over extracted face crops (DFDC, FaceForensics++, Celeb-DF v2): training never decodes video.

Reads the store's ``index.jsonl`` (a store without one: every ``manifest.json``) and the square crops, a clip
from one file open (:mod:`deepfake_ssat.faces.store`); items are ``(clip [C, T, H, W] float, label, key)``, label
1 = fake (:class:`FaceClipDataset`, :func:`video_key`).
Clip geometry and pixels: :mod:`.transforms`; which videos form train / val / test: :mod:`.splits`.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import ConfigError
from ..faces.store import INDEX_NAME, Container, StoreError, container_of, read_index, walk_rows
from ..io import paused_gc
from .transforms import ClipAugmentation, centre_resize, clip_positions, clip_span, clip_tensor, clip_uint8


class DatasetError(ConfigError):
    """Extracted data that cannot be used as configured; one line naming the file or key."""


@dataclass(frozen=True)
class FaceVideo:
    """One extracted video: its identity, label and the stored crops usable as clips.

    ``segments``: runs of ``(frame index, crop name)`` of one face track, in frame order. ``container``: the file
    holding every crop of the video, with ``spans[s]`` [len(segments[s]), 2] (byte offset, size) of each crop of
    segment ``s``; None when each crop is its own image file ``dir / name``.
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
    container: Container | None = None
    spans: tuple[np.ndarray, ...] = field(default=(), compare=False, repr=False)
    params: dict | None = field(default=None, compare=False, repr=False)  # the extraction's (same for a whole root)

    def num_crops(self) -> int:
        return sum(len(s) for s in self.segments)


def video_key(dataset: str | None, method: str | None, compression: str | None, video_id: str) -> str:
    """``dataset/method/compression/video_id`` (``-`` for an absent field): names the video for video-level
    metrics, so ``Deepfakes/000_003`` and ``Face2Face/000_003`` never merge."""
    return "/".join(v or "-" for v in (dataset, method, compression, video_id))


# ---------------------------------------------------------------------------------------------
# Reading an extraction root


def _read_rows(root: Path) -> list[dict]:
    """One row per finished video, from the store's index: one file read, no tree walk.

    A store without a current index (none written, or one of an older version) is walked instead: every
    ``manifest.json`` is read, and one line says how to write the index.
    """
    try:
        rows = read_index(root)
        if rows is not None:
            return rows
        rows = walk_rows(root, strict=True)
    except StoreError as e:
        raise DatasetError(str(e)) from None
    if rows:
        print(f"[data] {root}: no current {INDEX_NAME}, so every manifest.json was read (slow on a large store); "
              f"write the index once with: dfssat-extract-faces --reindex {root}", flush=True)
    return rows


def _segments(row: dict) -> tuple[tuple[tuple[tuple[int, str], ...], ...], tuple[np.ndarray, ...]]:
    """Crops grouped by track, then by extraction clip (``--clips`` mode), each in frame order; and for a
    container, each segment's crop spans [len(segment), 2] (byte offset, size)."""
    frames, files = row["frames"], row["files"]
    by_track: dict[int, list[int]] = {}  # track -> its crops' positions in the row
    for n, track in enumerate(row["tracks"]):
        by_track.setdefault(track, []).append(n)
    where = np.array([row["offsets"], row["sizes"]], np.int64).T if row.get("container") else None
    groups = [set(c) for c in row["clips"]] if row.get("clips") else [None]
    segments, spans = [], []
    for crops in by_track.values():
        crops.sort(key=lambda n: (frames[n], files[n]))  # stable: equal (frame, file) keep the row's order
        for group in groups:
            seg = crops if group is None else [n for n in crops if frames[n] in group]
            if seg:
                segments.append(tuple(zip([frames[n] for n in seg], [files[n] for n in seg])))
                if where is not None:
                    spans.append(where[seg])
    return tuple(segments), tuple(spans)


@paused_gc()
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
                           f"dfssat-extract-faces <videos> --out {root} first")
    span = clip_span(num_frames, frame_step)
    counts: Counter = Counter()
    reference: dict | None = None
    videos = []
    rows.reverse()
    while rows:  # each row is dropped as soon as its video is built: rows and videos never all coexist
        row = rows.pop()
        try:
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
            segments, spans = _segments(row)
            if max(len(s) for s in segments) < span:
                counts["padded"] += 1
            folder = root / row["dir"]
            videos.append(FaceVideo(
                key=video_key(row["dataset"], row["method"], row["compression"], row["video_id"]),
                label=int(row["label"]), dir=folder, segments=segments, dataset=row["dataset"],
                method=row["method"], compression=row["compression"], video_id=row["video_id"], part=row["part"],
                original=row["original"], group=row.get("group"), split=row.get("split"),
                container=container_of(folder, row), spans=spans, params=params))
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # a row edited by hand, or not by us
            raise DatasetError(f"data.root: {root / str(row.get('dir'))}: its index row (or manifest) is not readable "
                               f"({type(e).__name__}: {e}); re-run dfssat-extract-faces on that video, or "
                               f"dfssat-extract-faces --reindex {root}") from None
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
            f"data.faces.frame_step={frame_step} needs {span}; re-extract with more frames or lower them")


def read_crops(paths: list[Path]) -> np.ndarray:
    """Face crops stored one image file each -> [N, H, W, 3] uint8 RGB; :class:`DatasetError` naming the file
    that is missing, corrupt or of another size than the first."""
    out = None
    for n, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or (out is not None and image.shape != out.shape[1:]):
            raise DatasetError(f"{path}: cannot read face crop (missing, corrupt or of another size); re-run "
                               f"dfssat-extract-faces on that video")
        if out is None:
            out = np.empty((len(paths), *image.shape), np.uint8)
        cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out[n])
    return out


def read_clip(video: FaceVideo, segment: int, positions: list[int]) -> np.ndarray:
    """The crops at ``positions`` of ``video.segments[segment]`` -> [T, H, W, 3] uint8 RGB, from one file open
    when the video has a container; :class:`DatasetError` naming the file if one is unreadable."""
    if video.container is None:
        return read_crops([video.dir / video.segments[segment][p][1] for p in positions])
    try:
        return video.container.read(video.spans[segment][positions])
    except StoreError as e:
        raise DatasetError(str(e)) from None


class PackedVideos(Sequence):
    """A read-only list of :class:`FaceVideo` kept as two numpy arrays: every video pickled into one byte buffer,
    and where each ends (~1.7 KB per video of 32 crops, against ~7 KB as objects). Reading a video unpickles it
    (~25 µs, 0.3% of a 16 x 224^2 training clip).

    Why: a loader worker forked from the training process shares its memory until a page is written, and merely
    reading a Python object writes to it (its reference count). A plain list of FaceVideo (~50 objects per video)
    is thus copied, page by page, into every worker as it draws clips: 3-5 KB per video and worker measured, so
    0.4-0.6 GB per worker for DFDC's 119k videos, times every worker of every GPU. The two arrays are never written,
    so the workers keep sharing them. (The pickles are made here, by this process, of its own objects; nothing
    pickled is ever read from disk.)
    """

    @paused_gc()
    def __init__(self, videos: Iterable[FaceVideo]) -> None:
        blobs = [pickle.dumps(v, protocol=pickle.HIGHEST_PROTOCOL) for v in videos]
        self._ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)  # [N]: end of video i's bytes
        self._bytes = np.frombuffer(b"".join(blobs), np.uint8)  # [sum of sizes]

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> FaceVideo:
        if isinstance(index, slice):
            raise TypeError("PackedVideos takes one index at a time, not a slice")
        n = len(self._ends)
        if not -n <= index < n:
            raise IndexError(f"video {index} of {n}")
        index %= n
        start = int(self._ends[index - 1]) if index else 0
        return pickle.loads(self._bytes[start:int(self._ends[index])])

    def nbytes(self) -> int:
        """Bytes held (both arrays)."""
        return self._bytes.nbytes + self._ends.nbytes


class FaceClipDataset(Dataset):
    """Clips of face crops -> ``(clip [C, T, H, W] float32 normalised, label, key)``.

    ``train=True``: one item per video, a random segment and start per draw. ``train=False``:
    ``eval_clips`` fixed clips per video (evenly spread over all valid starts), one item each.

    A clip is ``num_frames`` crops of one face track, ``frame_step`` stored frames apart, inside one
    extraction segment (a ``--clips`` extraction stores several separate runs of frames; uniform
    extraction stores one). ``key`` is :func:`video_key`. ``uint8``: clips stay uint8 and channels-last,
    ``[T, H, W, C]`` (a quarter of the bytes to copy to a GPU, no transpose on the CPU), made ``[C, T, H, W]``
    float on the device by :func:`.transforms.normalize_clips`.
    """

    def __init__(self, videos: list[FaceVideo], img_size: int, num_frames: int, frame_step: int = 1,
                 train: bool = True, augment: bool = True, eval_clips: int = 4, uint8: bool = False):
        self.img_size, self.num_frames, self.frame_step, self.train = img_size, num_frames, frame_step, train
        self.uint8 = uint8
        self.augment = ClipAugmentation(img_size) if train and augment else None
        if train:
            items = [(i, -1, -1) for i in range(len(videos))]
        else:
            items = [(i, s, p) for i, v in enumerate(videos) for s, p in self._eval_starts(v, eval_clips)]
        # what loader workers read stays in arrays they share with this process (see PackedVideos)
        self.items = np.array(items, np.int64).reshape(-1, 3)  # [clips, 3]: video, segment, start (-1: drawn)
        self.labels = [videos[i].label for i, _, _ in items]
        self.videos = PackedVideos(videos)
        self._fakes = sum(v.label for v in videos)
        # made while the videos are objects: unpacking every video again at each training start costs ~2.5x as much
        self._manifest = json.dumps([_manifest_entry(v) for v in videos]).encode()  # one bytes object, shared too

    def _eval_starts(self, video: FaceVideo, count: int) -> list[tuple[int, int]]:
        span = clip_span(self.num_frames, self.frame_step)
        windows = [(s, p) for s, seg in enumerate(video.segments) for p in range(max(len(seg) - span, 0) + 1)]
        picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
        return [windows[i] for i in sorted(set(picks.tolist()))]

    def __len__(self) -> int:
        return len(self.items)

    @property
    def extraction(self) -> dict | None:
        """The parameters the crops were extracted with (crop size and scale, store format, face detector), as the
        manifests record them; recorded in training checkpoints so that inference crops faces the same way."""
        return self.videos[0].params if self.videos else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        v, seg, start = self.items[index].tolist()
        video = self.videos[v]
        span = clip_span(self.num_frames, self.frame_step)
        if seg < 0:  # training draw: a segment (by length) and a start, from the seeded global RNG
            lengths = [len(s) for s in video.segments]
            seg = random.choices(range(len(lengths)), weights=lengths)[0]
            start = random.randint(0, max(lengths[seg] - span, 0))
        positions = clip_positions(len(video.segments[seg]), self.num_frames, self.frame_step, start)
        frames = read_clip(video, seg, positions)
        frames = self.augment(frames) if self.augment else centre_resize(frames, self.img_size)
        return (clip_uint8(frames) if self.uint8 else clip_tensor(frames)), video.label, video.key

    def manifest(self) -> list[dict]:
        """What this split reads, hashed into the run: per video its key, label, number of crops and a
        digest of the crop list (segments, frame indices, files) — a few dozen bytes per video."""
        return json.loads(self._manifest)

    def describe(self) -> str:
        fake, n = self._fakes, len(self.videos)
        return (f"{n} videos ({n - fake} real, {fake} fake, {100.0 * fake / max(n, 1):.0f}% fake), "
                f"{len(self)} clips")


def _manifest_entry(video: FaceVideo) -> dict:
    return {"key": video.key, "label": video.label, "crops": video.num_crops(),
            "crops_sha1": hashlib.sha1(json.dumps(video.segments).encode()).hexdigest()}


def manifest_sha256(entries: dict[str, list[dict]]) -> str:
    """Hash of what each split reads (keys, labels, crop files): equal hashes = same data."""
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()
