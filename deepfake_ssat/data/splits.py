"""The split protocols of the face-clip datasets: scanned videos -> ``{"train", "val", "test"}`` lists.

Each dataset has its own rule that keeps related videos in one fold (DFDC: by part folder; FF++: the
official id pairs; Celeb-DF: the official test list, val by identity; a video list: by its group column,
a group taking the split its rows name), so a fake and its source, or one actor's videos, never land on
both sides. Folds drawn by fraction use ``random.Random(seed)``.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..faces.inputs import FFPP_METHODS
from .faceclips import DatasetError, FaceVideo

SPLITS = ("train", "val", "test")


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
                    raise DatasetError(f"data.faces.{fold}_parts: {p}: no extracted videos from part {name} "
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
            key = "data.faces.methods" if m in chosen else "data.faces.exclude_methods"
            raise DatasetError(f"{key}: {m}: no extracted FF++ videos of that method (have: {', '.join(present)})")
    if not chosen:
        raise DatasetError("data.faces.methods: no FF++ manipulation left after data.faces.exclude_methods")
    wanted = {"original", *chosen}
    ids: dict[str, set[str]] = {}
    for split in SPLITS:
        pairs = _read_pairs(splits_dir / f"{split}.json")
        ids[split] = {x for a, b in pairs for x in (a, b, f"{a}_{b}", f"{b}_{a}")}
    out: dict[str, list[FaceVideo]] = {s: [] for s in SPLITS}
    for v in videos:
        if v.dataset != "ffpp" or v.method not in wanted or v.compression not in levels:
            continue
        for split in SPLITS:
            if v.video_id in ids[split]:
                out[split].append(v)
    return out


def _read_pairs(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DatasetError(f"data.faces.splits_dir: {path} not found; point data.faces.splits_dir at the folder "
                           f"holding the official FF++ train.json, val.json and test.json")
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
        raise DatasetError(f"data.faces.test_list: {test_list} not found; point it at Celeb-DF's "
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
    return _by_fold(rest, _assign_groups(groups, val_fraction, 0.0, seed)) | {"test": test}


def split_list(videos: list[FaceVideo], val_fraction: float, test_fraction: float,
               seed: int) -> dict[str, list[FaceVideo]]:
    """The videos of a labelled video list (``dfssat-extract-faces --list``), split by group.

    A video's group is its list's ``group`` (identity / source video); a video without one is a group of
    its own. A group in which some video has an explicit ``split`` goes wholly to that split; the other
    groups are drawn by fraction with ``seed`` (``val_fraction`` / ``test_fraction`` of those groups).
    A group whose videos name two different splits is a :class:`DatasetError`: it would leak an
    identity across splits.
    """
    videos = sorted((v for v in videos if v.dataset == "list"), key=lambda v: v.key)
    groups = {v.key: f"group {v.group}" if v.group else f"video {v.video_id}" for v in videos}
    fixed: dict[str, FaceVideo] = {}  # group -> its first video with an explicit split
    for v in videos:
        if v.split is None:
            continue
        first = fixed.setdefault(groups[v.key], v)
        if first.split != v.split:
            raise DatasetError(
                f"data: video list group {v.group!r} is in split {first.split} ({first.video_id}) and in split "
                f"{v.split} ({v.video_id}); a group must stay in one split (identity leakage): fix the split "
                f"column of the list and rerun dfssat-extract-faces --list")
    drawn = _assign_groups({k: g for k, g in groups.items() if g not in fixed}, val_fraction, test_fraction, seed)
    return _by_fold(videos, drawn | {k: fixed[g].split for k, g in groups.items() if g in fixed})


def listed_videos(videos: list[FaceVideo], root: Path, video_list: Path) -> list[FaceVideo]:
    """The videos of ``video_list`` (the CSV given to ``dfssat-extract-faces --list``) among the extracted ones,
    with the CSV's current label / group / split; a list video extracted earlier but no longer listed is left
    out, a listed video that was not extracted (missing, no face) is counted in one printed line."""
    from dataclasses import replace

    from ..faces.inputs import InputError, video_list_items

    try:
        items = {item.rel_dir: item for item in video_list_items(video_list)}
    except InputError as e:
        raise DatasetError(f"data.faces.video_list: {e}") from None
    out = []
    for v in videos:
        item = items.pop(v.dir.relative_to(root).as_posix(), None)
        if v.dataset == "list" and item is not None:
            out.append(replace(v, label=item.label, group=item.group, split=item.split))
    if items:
        print(f"[data] {video_list}: {len(items)} listed videos have no usable extraction under {root} "
              f"(e.g. {next(iter(items.values())).path}); run dfssat-extract-faces --list {video_list} "
              f"--out {root}", flush=True)
    return out


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
    out: dict[str, list[FaceVideo]] = {s: [] for s in SPLITS}
    for v in videos:
        out[assign[v.key]].append(v)
    return out


def _part_order(part: str | None) -> tuple[int, str]:
    tail = (part or "").rsplit("_", 1)[-1]
    return (int(tail) if tail.isdigit() else -1, part or "")
