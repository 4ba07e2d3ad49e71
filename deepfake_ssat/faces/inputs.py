"""Input discovery for face extraction: a video file, a folder of videos (recursive), a DFDC part / root,
the DFDC public test set (``labels.csv``), an FF++ root, a Celeb-DF root, a labelled list of your own
videos. Every video becomes a :class:`VideoItem` whose ``rel_dir`` (its output folder
under ``--out``) mirrors the dataset's identity and is built from safe components only, so that no key can
leave ``--out`` or land on another video (rules: :func:`discover`, :func:`safe_component`).
"""
from __future__ import annotations

import json
import os
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
FFPP_COMPRESSIONS = ("raw", "c0", "c23", "c40")
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")  # manipulated_sequences/
FFPP_PAPER_METHODS = FFPP_METHODS[:4]  # FF++'s original four manipulations: the paper's Table 8 columns
DFDC_LABELS = {"REAL": 0, "FAKE": 1}
LIST_LABELS = {"REAL": 0, "FAKE": 1, "0": 0, "1": 1}  # a video list's label column (fake = 1), case-insensitive
LIST_SPLITS = ("train", "val", "test")
IDENTITY_FIELDS = ("dataset", "method", "compression", "video_id", "part", "label", "original", "group", "split")
MAX_COMPONENT_BYTES = 200
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\\ud800-\udfff]")


class InputError(ValueError):
    """An input root that cannot be used at all (missing path): a usage error, not a per-video skip."""


class NoVideosError(InputError):
    """An input that exists but holds no video."""


@dataclass(frozen=True)
class VideoItem:
    """One source video and where its crops go (``rel_dir``, relative to the output root).

    ``label``: 1 = fake, 0 = real, None = unknown. ``part``: the DFDC part folder (fold grouping).
    ``group`` / ``split``: a video list's group (identity or source video) and fixed split, if given.
    ``rel_dir`` (the output key) is ``<folder>/<relative path>`` for a plain folder, ``<parent>/<stem>``
    for a single file, ``dfdc/<part>/<stem>``, ``dfdc_test/<folder>/<stem>``,
    ``ffpp/<method>/<compression>/<stem>``, ``celebdf/<folder>/<stem>``, ``list/<path as listed, w/o suffix>``.
    A problem found while listing (e.g. a DFDC video missing from
    ``metadata.json``, a broken symbolic link) is carried as ``problem = (status, reason)`` so that the
    batch records it and goes on.
    """
    path: Path
    rel_dir: str
    dataset: str
    video_id: str
    label: int | None = None
    method: str | None = None
    compression: str | None = None
    part: str | None = None
    original: str | None = None
    group: str | None = None
    split: str | None = None
    problem: tuple[str, str] | None = None

    def identity(self) -> dict:
        """The fields that name this video in manifests and the index (:data:`IDENTITY_FIELDS`)."""
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}


def safe_component(name: str) -> str:
    """``name`` as one safe folder name; ordinary names (``abc``, ``000_003``, ``dfdc_train_part_0``) are unchanged.

    Path separators, control characters (newline, ...) and undecodable bytes become ``_``; a name that
    starts with ``.`` gets a ``_`` in front (``..mp4`` -> ``_.``, ``...mp4`` -> ``_..``, ``.hidden.mp4``
    -> ``_.hidden``), so hidden names stay free for the extraction's temp folders; a name over 200 bytes
    is cut and ends in ``-<crc32 of the name>``.
    """
    safe = _UNSAFE_CHARS.sub("_", name)
    if not safe or safe.startswith("."):
        safe = "_" + safe
    if len(safe.encode()) > MAX_COMPONENT_BYTES:
        cut = safe.encode()[:MAX_COMPONENT_BYTES - 9].decode(errors="ignore")
        safe = f"{cut}-{zlib.crc32(os.fsencode(name)):08x}"
    return safe


def _safe_key(*components: str) -> str:
    """``components`` (each may hold ``/``-separated parts) as a relative key of safe components."""
    return "/".join(safe_component(part) for comp in components for part in comp.split("/"))


def _resolved(path: Path) -> Path:
    """``path`` absolute, with ``.``, ``..`` and symlinked parent folders resolved; a symbolic link keeps
    its own name (a linked video or folder is named by the link, as the user sees it)."""
    path = path.absolute()
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def _link_problem(path: Path) -> tuple[str, str] | None:
    """``("missing", reason)`` for a symbolic link whose target is gone, else None."""
    if path.is_symlink() and not path.exists():
        return "missing", f"{path}: broken symbolic link (its target {os.readlink(path)} is gone)"
    return None


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and (path.is_file() or _link_problem(path) is not None)


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_video(p))


def folder_items(root: Path) -> list[VideoItem]:
    """Every video under ``root`` (recursive), unlabelled, at ``<root name>/<relative path w/o suffix>``."""
    name = _resolved(root).name or "videos"
    items = []
    for path in _videos_under(root):
        parts = path.relative_to(root).parts
        rel = "/".join((*parts[:-1], Path(parts[-1]).stem))
        items.append(VideoItem(path, _safe_key(name, rel), name, rel, problem=_link_problem(path)))
    return items


def file_item(path: Path) -> VideoItem:
    """A single video file, at ``<parent folder name>/<stem>``."""
    parent = _resolved(path).parent.name or "videos"
    return VideoItem(path, _safe_key(parent, path.stem), parent, path.stem, problem=_link_problem(path))


def _dfdc_label(entry: object) -> tuple[int | None, str | None, str | None]:
    """``(label, original, problem reason)`` from one ``metadata.json`` entry."""
    if not isinstance(entry, dict):
        return None, None, f"metadata.json entry is {type(entry).__name__}, expected an object"
    label = entry.get("label")
    if label not in DFDC_LABELS:
        return None, None, f"metadata.json: unknown label {label!r} (expected REAL or FAKE)"
    return DFDC_LABELS[label], entry.get("original"), None


def dfdc_part_items(part: Path) -> list[VideoItem]:
    """Videos of one ``dfdc_train_part_*`` folder, labelled from its ``metadata.json``.

    A video missing from the metadata or with an unknown label, a metadata entry whose file is missing
    (or a broken link), and an unreadable ``metadata.json`` all become items with a ``problem``.
    """
    videos = {p.name: p for p in part.iterdir() if _is_video(p)}
    try:
        meta = json.loads((part / "metadata.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"top level is {type(meta).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = f"{part / 'metadata.json'}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        meta, global_problem = {}, ("bad_metadata", reason)
    else:
        global_problem = None
    part_name = _resolved(part).name
    items = []
    for name in sorted(set(videos) | set(meta)):
        path = videos.get(name, part / name)
        stem = Path(name).stem
        common = dict(path=path, rel_dir=_safe_key("dfdc", part_name, stem), dataset="dfdc", video_id=stem,
                      part=part_name)
        if global_problem:
            items.append(VideoItem(**common, problem=global_problem))
        elif name not in meta:
            items.append(VideoItem(**common, problem=("bad_metadata", f"{name}: not listed in metadata.json")))
        else:
            label, original, reason = _dfdc_label(meta[name])
            problem = ("bad_metadata", f"{name}: {reason}") if reason else None
            if name not in videos and not problem:
                problem = ("missing", f"{name}: listed in metadata.json but the file is missing")
            items.append(VideoItem(**common, label=label, original=original,
                                   problem=problem or _link_problem(path)))
    return items


def ffpp_items(root: Path) -> list[VideoItem]:
    """Videos of a FaceForensics++ root at ``ffpp/<method>/<compression>/<id>``.

    Real: ``original_sequences/{youtube,actors}/<comp>/videos`` (method ``original`` / ``actors``);
    fake: ``manipulated_sequences/<Method>/<comp>/videos``. ``<comp>`` is raw, c0, c23 or c40.
    """
    groups = [("original_sequences", 0), ("manipulated_sequences", 1)]
    items = []
    for top, label in groups:
        for source in sorted(p for p in (root / top).glob("*") if p.is_dir()):
            method = {"youtube": "original"}.get(source.name, source.name) if label == 0 else source.name
            for comp in FFPP_COMPRESSIONS:
                for path in _videos_under(source / comp / "videos"):
                    items.append(VideoItem(path, _safe_key("ffpp", method, comp, path.stem), "ffpp", path.stem,
                                           label=label, method=method, compression=comp,
                                           problem=_link_problem(path)))
    return items


CELEBDF_FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}


def celebdf_items(root: Path) -> list[VideoItem]:
    """Celeb-DF (v2) videos at ``celebdf/<folder>/<id>``, labelled by folder (``Celeb-synthesis`` = fake).

    ``method`` is the folder name; the official test list is applied by the training dataset.
    """
    items = []
    for folder, label in CELEBDF_FOLDERS.items():
        for path in _videos_under(root / folder):
            items.append(VideoItem(path, _safe_key("celebdf", folder, path.stem), "celebdf", path.stem,
                                   label=label, method=folder, problem=_link_problem(path)))
    return items


class ListError(InputError):
    """A label file (a video list, DFDC's ``labels.csv``) that cannot be read as one: one line naming the
    file, the line and what to fix; raised before any video is processed."""


def _csv_rows(path: Path, required: tuple[str, ...], optional: tuple[str, ...]) -> list[tuple[int, dict]]:
    """``(line number, row)`` of a CSV with a header naming ``required`` (+ ``optional``) columns; blank
    lines are skipped; :class:`ListError` for an unreadable file, a missing column or an unknown one."""
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ListError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    lines = text.splitlines()
    reader = csv.reader(lines)
    header = [h.strip().lower() for h in next(reader, [])]
    missing = [c for c in required if c not in header]
    unknown = [c for c in header if c not in required + optional]
    if missing or unknown or len(set(header)) != len(header):
        want = ",".join(required) + "".join(f"[,{c}]" for c in optional)
        raise ListError(f"{path}: line 1: header must be {want}, got {','.join(header) or 'nothing'}")
    rows = []
    for n, fields in enumerate(reader, 2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) > len(header):
            raise ListError(f"{path}: line {n}: {len(fields)} fields but the header names {len(header)}")
        rows.append((n, {h: (fields[i].strip() if i < len(fields) else "") for i, h in enumerate(header)}))
    return rows


def _list_label(path: Path, n: int, value: str) -> int:
    if value.upper() not in LIST_LABELS:
        raise ListError(f"{path}: line {n}: unknown label {value!r}; use REAL / FAKE or 0 / 1 (1 = fake)")
    return LIST_LABELS[value.upper()]


def dfdc_test_items(folder: Path) -> list[VideoItem]:
    """The DFDC public test set as distributed: videos beside ``labels.csv`` (``filename,label``, 1 = fake),
    at ``dfdc_test/<folder>/<stem>``. A listed file that is missing and a video not listed are recorded
    (``missing`` / ``bad_metadata``); an unknown label or a file listed twice is a :class:`ListError`."""
    labels_csv = folder / "labels.csv"
    labels: dict[str, int] = {}
    for n, row in _csv_rows(labels_csv, ("filename", "label"), ()):
        name = row["filename"]
        if not name or Path(name).name != name:
            raise ListError(f"{labels_csv}: line {n}: filename {name!r} must be a file name beside labels.csv")
        if name in labels:
            raise ListError(f"{labels_csv}: line {n}: {name} is listed twice")
        labels[name] = _list_label(labels_csv, n, row["label"])
    videos = {p.name: p for p in folder.iterdir() if _is_video(p)}
    name = _resolved(folder).name or "videos"
    items = []
    for file in sorted(set(videos) | set(labels)):
        path = videos.get(file, folder / file)
        stem = Path(file).stem
        problem = None
        if file not in labels:
            problem = ("bad_metadata", f"{file}: not listed in {labels_csv}")
        elif file not in videos:
            problem = ("missing", f"{file}: listed in {labels_csv} but the file is missing")
        items.append(VideoItem(path, _safe_key("dfdc_test", name, stem), "dfdc_test", stem, label=labels.get(file),
                               part=name, problem=problem or _link_problem(path)))
    return items


def video_list_items(list_file: str | Path) -> list[VideoItem]:
    """The videos of a labelled list: a CSV with header ``path,label[,group][,split]``.

    ``path``: a video, relative to the list's folder or absolute; ``label``: REAL / FAKE or 0 / 1 (1 = fake);
    ``group``: the identity or source video, so that a group never spans two splits (default: the video
    alone); ``split``: train / val / test, or empty to draw it by group. Each video lands at
    ``list/<path as listed, without suffix>`` (``..`` and ``/`` kept out by :func:`safe_component`), dataset
    ``list``, id = that path. A missing file is recorded (``missing``); a malformed line, an unknown label or
    split, and a path listed twice are a :class:`ListError` naming the line, before any work.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise InputError(f"--list {list_file}: no such file")
    base = _resolved(list_file).parent
    seen: dict[Path, int] = {}
    items = []
    for n, row in _csv_rows(list_file, ("path", "label"), ("group", "split")):
        if not row["path"]:
            raise ListError(f"{list_file}: line {n}: empty path")
        listed = Path(row["path"])
        path = listed if listed.is_absolute() else base / listed
        where = _resolved(path)
        if where in seen:
            raise ListError(f"{list_file}: line {n}: {row['path']} is already listed on line {seen[where]}; "
                            f"list each video once")
        seen[where] = n
        label = _list_label(list_file, n, row["label"])
        split = row.get("split", "").lower() or None
        if split is not None and split not in LIST_SPLITS:
            raise ListError(f"{list_file}: line {n}: unknown split {row['split']!r}; use train, val, test or "
                            f"leave it empty")
        rel = listed.with_suffix("").as_posix().lstrip("/")
        problem = _link_problem(path) or (None if path.is_file() else ("missing", f"{path}: listed in {list_file} "
                                                                                   f"(line {n}) but not found"))
        items.append(VideoItem(path, _safe_key("list", rel), "list", rel, label=label,
                               group=row.get("group") or None, split=split, problem=problem))
    return _mark_duplicates(_distinct_keys(items))


def _input_items(path: Path) -> list[VideoItem]:
    """The videos of one input (a file, a DFDC part or root, the DFDC test set, an FF++ or Celeb-DF root,
    a plain folder)."""
    if path.is_file():
        return [file_item(path)]
    if (path / "metadata.json").is_file():
        return dfdc_part_items(path)
    if parts := sorted(p for p in path.glob("dfdc_train_part_*") if (p / "metadata.json").is_file()):
        return [item for part in parts for item in dfdc_part_items(part)]
    if (path / "labels.csv").is_file():
        return dfdc_test_items(path)
    if (path / "original_sequences").is_dir() or (path / "manipulated_sequences").is_dir():
        return ffpp_items(path)
    if any((path / name).is_dir() for name in CELEBDF_FOLDERS):
        return celebdf_items(path)
    return folder_items(path)


def discover(inputs: list[str | Path], allow_empty: bool = True,
             video_list: str | Path | None = None) -> list[VideoItem]:
    """All videos of ``inputs`` (and of the labelled ``video_list``, :func:`video_list_items`); raises
    :class:`InputError` for a path that does not exist, and
    :class:`NoVideosError` for an input without any video unless ``allow_empty``.

    A folder is a DFDC part if it holds ``metadata.json``, a DFDC root if it holds ``dfdc_train_part_*``
    folders, the DFDC test set if it holds ``labels.csv``, an FF++ root if it holds ``original_sequences`` or
    ``manipulated_sequences``, a Celeb-DF
    root if it holds ``Celeb-real`` / ``Celeb-synthesis`` / ``YouTube-real``, else a plain folder of
    videos. Keys are made distinct within one input; two inputs mapping to the same output folder: the
    later video is a ``duplicate``.

    Key rules, so that no key can leave ``--out`` or land on another video: inputs are resolved first
    (``.``, ``./``, ``..``, ``a/../b.mp4`` are named by the real folder; a symbolic link keeps its own
    name) and a nameless root (``/``) is called ``videos``; every component goes through
    :func:`safe_component`; two videos of one input that still get the same key (``a.mp4`` and
    ``a.avi``, ``.x.mp4`` and ``_.x.mp4``) are told apart by a ``-2``, ``-3``, ... suffix on the later
    one (sorted order, so stable across reruns and shards), on both ``rel_dir`` and ``video_id``; the
    manifest records the key and the source path. Two *inputs* that map to the same key (the same
    folder name twice): the later video is a ``duplicate`` and is not extracted.
    """
    items: list[VideoItem] = video_list_items(video_list) if video_list is not None else []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        found = _distinct_keys(_input_items(path))
        if not found and not allow_empty:
            raise NoVideosError(f"{path}: no videos found (looked for {', '.join(sorted(VIDEO_SUFFIXES))})")
        items += found
    return _mark_duplicates(items)


def _distinct_keys(items: list[VideoItem]) -> list[VideoItem]:
    """``items`` with a ``-N`` suffix on every key (and video id) already taken by an earlier item."""
    natural = {item.rel_dir for item in items}
    used: set[str] = set()
    out = []
    for item in items:
        if item.rel_dir in used:
            n = 2
            while f"{item.rel_dir}-{n}" in natural or f"{item.rel_dir}-{n}" in used:
                n += 1
            item = replace(item, rel_dir=f"{item.rel_dir}-{n}", video_id=f"{item.video_id}-{n}")
        used.add(item.rel_dir)
        out.append(item)
    return out


def _mark_duplicates(items: list[VideoItem]) -> list[VideoItem]:
    seen: dict[str, Path] = {}
    out = []
    for item in items:
        if item.rel_dir in seen and not item.problem:
            reason = f"{item.path}: output folder {item.rel_dir} already taken by {seen[item.rel_dir]}"
            item = replace(item, problem=("duplicate", reason))
        seen.setdefault(item.rel_dir, item.path)
        out.append(item)
    return out


def shard(items: list[VideoItem], index: int, count: int) -> list[VideoItem]:
    """The items of shard ``index`` of ``count``: by a stable hash of ``rel_dir``, so every machine
    computes the same split with no coordination and the shards partition the input exactly."""
    if not 0 <= index < count:
        raise ValueError(f"--shard must be in [0, {count}), got {index}")
    return [it for it in items if zlib.crc32(it.rel_dir.encode()) % count == index]
