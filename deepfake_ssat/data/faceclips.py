"""Face-clip datasets over the output of ``tools/extract_faces.py``: DFDC, FaceForensics++, Celeb-DF v2.

The training loop never touches raw videos: it reads each video's ``manifest.json`` (through
``index.jsonl`` where it is current) and the stored square face crops. A clip is ``num_frames``
crops of one face track, ``frame_step`` stored frames apart, inside one extraction segment (a
``--clips`` extraction stores several separate runs of frames; uniform extraction stores one).
Training draws one random clip per video per epoch; evaluation uses ``eval_clips`` clips per video
with starts spread over the video. Items are ``(clip [C, T, H, W] float, label, key)``, label
1 = fake, and ``key`` = ``dataset/method/compression/video_id`` names the video for video-level
metrics (``-`` for an absent field), so ``Deepfakes/000_003`` and ``Face2Face/000_003`` never merge.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import ConfigError
from ..io import find_files

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_SPLITS = ("train", "val", "test")


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

    def num_crops(self) -> int:
        return sum(len(s) for s in self.segments)


def video_key(dataset: str | None, method: str | None, compression: str | None, video_id: str) -> str:
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
            row = {k: m.get(k) for k in ("dataset", "method", "compression", "video_id", "part", "label",
                                         "original", "status", "clips", "params")}
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
    span = (num_frames - 1) * frame_step + 1
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
            original=row["original"]))
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


# ---------------------------------------------------------------------------------------------
# Splits


def split_dfdc(videos: list[FaceVideo], val_parts: list[str] | None, test_parts: list[str] | None,
               val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[FaceVideo]]:
    """Folds by DFDC part folder, so an original and all its fakes (and the part's actors) share a fold.

    Parts are named (``dfdc_train_part_7`` or ``7``) by ``val_parts`` / ``test_parts``, or else drawn
    by fraction with ``seed`` (at least one part each when there are 3 or more). With fewer than 3
    parts the folds group each original with its fakes instead (not identity-safe; for small runs).
    """
    videos = [v for v in videos if v.dataset == "dfdc"]
    parts = sorted({v.part for v in videos}, key=_part_order)
    named = {"val": val_parts, "test": test_parts}
    fold_of: dict[str, str] = {}
    if val_parts is not None or test_parts is not None:
        for fold, wanted in named.items():
            for p in wanted or []:
                name = p if str(p).startswith("dfdc_train_part_") else f"dfdc_train_part_{p}"
                if name not in parts:
                    raise DatasetError(f"data.{fold}_parts: {p}: no extracted videos from part {name} "
                                       f"(have: {', '.join(parts)})")
                fold_of[name] = fold
        assign = {v.key: fold_of.get(v.part, "train") for v in videos}
    elif len(parts) >= 3:
        order = parts[:]
        random.Random(seed).shuffle(order)
        n_test = max(1, round(test_fraction * len(order))) if test_fraction > 0 else 0
        n_val = max(1, round(val_fraction * len(order))) if val_fraction > 0 else 0
        fold_of = {p: "test" for p in order[:n_test]} | {p: "val" for p in order[n_test:n_test + n_val]}
        assign = {v.key: fold_of.get(v.part, "train") for v in videos}
    else:
        groups = {v.key: f"{v.part}/{Path(v.original).stem if v.original else v.video_id}" for v in videos}
        assign = _assign_groups(groups, val_fraction, test_fraction, seed)
    return _by_fold(videos, assign)


def split_ffpp(videos: list[FaceVideo], splits_dir: Path, compression: str, methods: list[str] | None,
               exclude: list[str]) -> dict[str, list[FaceVideo]]:
    """The official split: ``{train,val,test}.json`` list pairs ``[a, b]`` -> real ``a``, ``b``; fakes
    ``a_b``, ``b_a`` of each selected method, at ``compression`` (``raw`` and ``c0`` are the same level)."""
    levels = {"raw", "c0"} if compression in ("raw", "c0") else {compression}
    present = sorted({v.method for v in videos if v.dataset == "ffpp" and v.label == 1})
    chosen = [m for m in (methods if methods is not None else [m for m in FFPP_METHODS if m in present])
              if m not in exclude]
    for m in chosen + list(exclude):
        if m not in present:
            key = "data.methods" if m in chosen else "data.exclude_methods"
            raise DatasetError(f"{key}: {m}: no extracted FF++ videos of that method (have: {', '.join(present)})")
    if not chosen:
        raise DatasetError("data.methods: no FF++ manipulation left after data.exclude_methods")
    wanted = {"original", *chosen}
    ids: dict[str, set[str]] = {}
    for split in FFPP_SPLITS:
        pairs = _read_pairs(splits_dir / f"{split}.json")
        ids[split] = {x for a, b in pairs for x in (a, b, f"{a}_{b}", f"{b}_{a}")}
    out: dict[str, list[FaceVideo]] = {s: [] for s in FFPP_SPLITS}
    for v in videos:
        if v.dataset != "ffpp" or v.method not in wanted or v.compression not in levels:
            continue
        for split in FFPP_SPLITS:
            if v.video_id in ids[split]:
                out[split].append(v)
    return out


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DatasetError(f"data.splits_dir: {path} not found; point data.splits_dir at the folder holding "
                           f"the official FF++ train.json, val.json and test.json")
    try:
        pairs = json.loads(path.read_text())
        return [(str(a), str(b)) for a, b in pairs]
    except (ValueError, TypeError) as e:
        raise DatasetError(f"{path}: not a FF++ split file (a JSON list of [target, source] id pairs): "
                           f"{e}") from None


def split_celebdf(videos: list[FaceVideo], test_list: Path, val_fraction: float,
                  seed: int) -> dict[str, list[FaceVideo]]:
    """Test = the official ``List_of_testing_videos.txt`` (``<label> <folder>/<file>``, label **1 = real**
    in that file); train/val = the other videos, val drawn by identity (``id<N>``) with ``seed``."""
    if not test_list.is_file():
        raise DatasetError(f"data.test_list: {test_list} not found; point it at Celeb-DF's "
                           f"List_of_testing_videos.txt")
    listed: dict[str, int] = {}
    for n, line in enumerate(test_list.read_text().splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[0] not in ("0", "1"):
            raise DatasetError(f"{test_list}: line {n}: expected '<1 real|0 fake> <folder>/<file>', got {line!r}")
        folder, name = Path(fields[1]).parent.name, Path(fields[1]).stem
        listed[f"{folder}/{name}"] = 1 - int(fields[0])  # to our convention: fake = 1
    test, rest = [], []
    for v in videos:
        if v.dataset != "celebdf":
            continue
        name = f"{v.method}/{v.video_id}"
        if name in listed:
            if listed[name] != v.label:
                raise DatasetError(f"{test_list}: {name} is listed as {'fake' if listed[name] else 'real'} but "
                                   f"its folder says otherwise; check the list")
            test.append(v)
        else:
            rest.append(v)
    groups = {v.key: v.video_id.split("_")[0] for v in rest}  # id<N>: one identity (real and its fakes)
    assign = _assign_groups(groups, val_fraction, 0.0, seed)
    return {"train": [v for v in rest if assign[v.key] == "train"],
            "val": [v for v in rest if assign[v.key] == "val"], "test": test}


def _assign_groups(groups: dict[str, str], val_fraction: float, test_fraction: float, seed: int) -> dict[str, str]:
    """Fold per key so that keys of one group share a fold; groups drawn by fraction with ``seed``."""
    names = sorted(set(groups.values()))
    random.Random(seed).shuffle(names)
    n_test = round(test_fraction * len(names))
    n_val = round(val_fraction * len(names))
    if len(names) >= 3:
        n_test, n_val = max(n_test, 1 if test_fraction > 0 else 0), max(n_val, 1 if val_fraction > 0 else 0)
    fold = {g: "test" for g in names[:n_test]} | {g: "val" for g in names[n_test:n_test + n_val]}
    return {k: fold.get(g, "train") for k, g in groups.items()}


def _by_fold(videos: list[FaceVideo], assign: dict[str, str]) -> dict[str, list[FaceVideo]]:
    out: dict[str, list[FaceVideo]] = {"train": [], "val": [], "test": []}
    for v in videos:
        out[assign[v.key]].append(v)
    return out


def _part_order(part: str | None) -> tuple[int, str]:
    tail = (part or "").rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, part or "")


# ---------------------------------------------------------------------------------------------
# Clips and augmentation


def resized_crop(frames: np.ndarray, size: int, box: tuple[int, int, int, int], flip: bool) -> np.ndarray:
    """The same crop ``box`` (x, y, w, h) of every frame [T, H, W, 3], resized to ``size``, optionally
    mirrored -> [T, size, size, 3] uint8 (OpenCV per frame: several times faster than a generic pipeline)."""
    x, y, w, h = box
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        crop = frame[y:y + h, x:x + w]
        interp = cv2.INTER_AREA if w > size else cv2.INTER_LINEAR
        cv2.resize(crop, (size, size), dst=out[t], interpolation=interp)
        if flip:
            cv2.flip(out[t], 1, dst=out[t])
    return out


def random_crop_box(height: int, width: int, scale: tuple[float, float] = (0.5, 1.0),
                    ratio: tuple[float, float] = (0.9, 1.1)) -> tuple[int, int, int, int]:
    """A RandomResizedCrop box (x, y, w, h) drawn from Python's ``random`` (seeded per item)."""
    area = height * width
    for _ in range(10):
        target = area * random.uniform(*scale)
        aspect = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return random.randint(0, width - w), random.randint(0, height - h), w, h
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def centre_box(height: int, width: int) -> tuple[int, int, int, int]:
    side = min(height, width)
    return (width - side) // 2, (height - side) // 2, side, side


def photometric_transform():
    """albumentations colour / quality augmentation, applied with ONE random draw to every frame of a
    clip (``images=`` target): brightness-contrast and hue-saturation jitter, JPEG re-compression,
    Gaussian noise, Gaussian blur."""
    import albumentations as A

    return A.Compose([
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=0.3),
        A.ImageCompression(quality_range=(50, 100), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.GaussianBlur(blur_limit=(3, 5), p=0.1),
    ])


def read_crop(path: Path) -> np.ndarray:
    """A stored face crop as (H, W, 3) uint8 RGB; :class:`DatasetError` naming the file if unreadable."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{path}: cannot read face crop (missing or corrupt); re-run tools/extract_faces.py "
                           f"on that video")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def clip_positions(length: int, num_frames: int, step: int, start: int) -> list[int]:
    """Positions ``start, start + step, ...`` in a segment of ``length`` crops, clamped to its last crop."""
    return [min(start + k * step, length - 1) for k in range(num_frames)]


class FaceClipDataset(Dataset):
    """Clips of face crops -> ``(clip [C, T, H, W] float32 normalised, label, key)``.

    ``train=True``: one item per video, a random segment and start per draw. ``train=False``:
    ``eval_clips`` fixed clips per video (evenly spread over all valid starts), one item each.
    """

    def __init__(self, videos: list[FaceVideo], img_size: int, num_frames: int, frame_step: int = 1,
                 train: bool = True, augment: bool = True, eval_clips: int = 4):
        self.videos = videos
        self.img_size, self.num_frames, self.frame_step, self.train = img_size, num_frames, frame_step, train
        self.augment = train and augment
        self.photometric = photometric_transform() if self.augment else None
        std = torch.tensor(IMAGENET_STD)
        self.scale = (1.0 / (255.0 * std)).view(3, 1, 1, 1)  # uint8 -> normalised in one multiply-add
        self.shift = (-torch.tensor(IMAGENET_MEAN) / std).view(3, 1, 1, 1)
        if train:
            self.items = [(i, -1, -1) for i in range(len(videos))]
        else:
            self.items = [(i, s, p) for i, v in enumerate(videos) for s, p in self._eval_starts(v, eval_clips)]
        self.labels = [videos[i].label for i, _, _ in self.items]

    def _eval_starts(self, video: FaceVideo, count: int) -> list[tuple[int, int]]:
        span = (self.num_frames - 1) * self.frame_step + 1
        windows = [(s, p) for s, seg in enumerate(video.segments) for p in range(max(len(seg) - span, 0) + 1)]
        picks = np.linspace(0, len(windows) - 1, min(count, len(windows))).round().astype(int)
        return [windows[i] for i in sorted(set(picks.tolist()))]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        v, seg, start = self.items[index]
        video = self.videos[v]
        span = (self.num_frames - 1) * self.frame_step + 1
        if seg < 0:  # training draw: a segment (by length) and a start, from the seeded global RNG
            lengths = [len(s) for s in video.segments]
            seg = random.choices(range(len(lengths)), weights=lengths)[0]
            start = random.randint(0, max(lengths[seg] - span, 0))
        segment = video.segments[seg]
        frames = np.stack([read_crop(video.dir / segment[p][1])
                           for p in clip_positions(len(segment), self.num_frames, self.frame_step, start)])
        height, width = frames.shape[1:3]
        if self.augment:  # one draw for every frame: crop box, flip, then colour / quality
            box, flip = random_crop_box(height, width), random.random() < 0.5
            frames = resized_crop(frames, self.img_size, box, flip)
            self.photometric.set_random_seed(random.getrandbits(32))
            frames = self.photometric(images=frames)["images"]
        elif (height, width) != (self.img_size, self.img_size):  # shorter side to img_size, centre crop
            frames = resized_crop(frames, self.img_size, centre_box(height, width), flip=False)
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2)  # [3, T, H, W] uint8 view
        out = torch.empty(clip.shape, dtype=torch.float32).copy_(clip)  # contiguous float
        return out.mul_(self.scale).add_(self.shift), video.label, video.key

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


def build_face_clips(name: str, root: Path, img_size: int, num_frames: int, *, frame_step: int = 1,
                     augment: bool = True, eval_clips: int = 4, val_fraction: float = 0.1,
                     test_fraction: float = 0.2, split_seed: int = 0, val_parts: list[str] | None = None,
                     test_parts: list[str] | None = None, compression: str = "c23",
                     methods: list[str] | None = None, exclude_methods: list[str] | None = None,
                     splits_dir: Path | None = None, test_list: Path | None = None,
                     only: tuple[str, ...] = ("train", "val", "test")) -> dict[str, FaceClipDataset]:
    """Train / val / test face-clip datasets of ``name`` (dfdc | ffpp | celebdf) from an extraction root
    (``only`` the splits named, e.g. ``("test",)`` for evaluation)."""
    if frame_step < 1 or eval_clips < 1:
        raise DatasetError(f"data.frame_step and data.eval_clips must be >= 1, got {frame_step}, {eval_clips}")
    videos, counts = scan_extraction(root, num_frames, frame_step, img_size)
    if name == "dfdc":
        splits = split_dfdc(videos, val_parts, test_parts, val_fraction, test_fraction, split_seed)
    elif name == "ffpp":
        if splits_dir is None:
            splits_dir = next((d for d in (root / "splits", root) if (d / "train.json").is_file()), root / "splits")
        splits = split_ffpp(videos, Path(splits_dir), compression, methods, exclude_methods or [])
    elif name == "celebdf":
        if test_list is None:
            raise DatasetError("data.test_list: Celeb-DF needs the official List_of_testing_videos.txt; set "
                               "data.test_list")
        splits = split_celebdf(videos, Path(test_list), val_fraction, split_seed)
    else:
        raise DatasetError(f"data.name: {name!r} is not a face-clip dataset (dfdc, ffpp, celebdf)")
    splits = {split: items for split, items in splits.items() if split in only}
    for split, items in splits.items():
        if not items:
            raise DatasetError(f"data: {name} split '{split}' is empty ({len(videos)} usable videos under {root}); "
                               f"check data.root and the split settings")
    left_out = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != "padded")
    if left_out:
        print(f"[data] {root}: videos left out: {left_out} (each manifest.json says why)", flush=True)
    if counts["padded"]:
        print(f"[data] {root}: {counts['padded']} videos have fewer face crops than one clip needs; their "
              f"last crop is repeated", flush=True)
    return {split: FaceClipDataset(items, img_size, num_frames, frame_step, train=split == "train",
                                   augment=augment, eval_clips=eval_clips)
            for split, items in splits.items()}
