"""Input discovery: a video file, a folder of videos (recursive), a DFDC part / root, an FF++ root.

Every video becomes a :class:`VideoItem` whose ``rel_dir`` (output folder under ``--out``) mirrors the
dataset's identity; a problem found while listing (e.g. a DFDC video missing from ``metadata.json``)
is carried on the item as ``problem = (status, reason)`` so that the batch records it and goes on.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from pathlib import Path

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"})
FFPP_COMPRESSIONS = ("raw", "c0", "c23", "c40")
DFDC_LABELS = {"REAL": 0, "FAKE": 1}


class InputError(ValueError):
    """An input root that cannot be used at all (missing path): a usage error, not a per-video skip."""


@dataclass(frozen=True)
class VideoItem:
    """One source video and where its crops go (``rel_dir``, relative to the output root).

    ``label``: 1 = fake, 0 = real, None = unknown. ``part``: the DFDC part folder (fold grouping).
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
    problem: tuple[str, str] | None = None

    def identity(self) -> dict:
        """The fields that name this video in manifests and the index."""
        return {"dataset": self.dataset, "method": self.method, "compression": self.compression,
                "video_id": self.video_id, "part": self.part, "label": self.label, "original": self.original}


def _videos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def folder_items(root: Path) -> list[VideoItem]:
    """Every video under ``root`` (recursive), unlabelled, at ``<root name>/<relative path w/o suffix>``."""
    return [VideoItem(p, f"{root.name}/{p.relative_to(root).with_suffix('').as_posix()}", root.name,
                      p.relative_to(root).with_suffix("").as_posix()) for p in _videos_under(root)]


def file_item(path: Path) -> VideoItem:
    """A single video file, at ``<parent folder name>/<stem>``."""
    return VideoItem(path, f"{path.parent.name or 'videos'}/{path.stem}", path.parent.name or "videos", path.stem)


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

    A video missing from the metadata or with an unknown label, a metadata entry whose file is missing,
    and an unreadable ``metadata.json`` all become items with a ``problem``.
    """
    videos = {p.name: p for p in part.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()}
    try:
        meta = json.loads((part / "metadata.json").read_text())
        if not isinstance(meta, dict):
            raise ValueError(f"top level is {type(meta).__name__}, expected an object")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = f"{part / 'metadata.json'}: unreadable ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        meta, global_problem = {}, ("bad_metadata", reason)
    else:
        global_problem = None
    items = []
    for name in sorted(set(videos) | set(meta)):
        path = videos.get(name, part / name)
        common = dict(path=path, rel_dir=f"dfdc/{part.name}/{Path(name).stem}", dataset="dfdc",
                      video_id=Path(name).stem, part=part.name)
        if global_problem:
            items.append(VideoItem(**common, problem=global_problem))
        elif name not in meta:
            items.append(VideoItem(**common, problem=("bad_metadata", f"{name}: not listed in metadata.json")))
        else:
            label, original, reason = _dfdc_label(meta[name])
            problem = ("bad_metadata", f"{name}: {reason}") if reason else None
            if name not in videos and not problem:
                problem = ("missing", f"{name}: listed in metadata.json but the file is missing")
            items.append(VideoItem(**common, label=label, original=original, problem=problem))
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
                    items.append(VideoItem(path, f"ffpp/{method}/{comp}/{path.stem}", "ffpp", path.stem,
                                           label=label, method=method, compression=comp))
    return items


CELEBDF_FOLDERS = {"Celeb-real": 0, "YouTube-real": 0, "Celeb-synthesis": 1}


def celebdf_items(root: Path) -> list[VideoItem]:
    """Celeb-DF (v2) videos at ``celebdf/<folder>/<id>``, labelled by folder (``Celeb-synthesis`` = fake).

    ``method`` is the folder name; the official test list is applied by the training dataset.
    """
    items = []
    for folder, label in CELEBDF_FOLDERS.items():
        for path in _videos_under(root / folder):
            items.append(VideoItem(path, f"celebdf/{folder}/{path.stem}", "celebdf", path.stem, label=label,
                                   method=folder))
    return items


def discover(inputs: list[str | Path]) -> list[VideoItem]:
    """All videos of ``inputs``; raises :class:`InputError` for a path that does not exist.

    A folder is a DFDC part if it holds ``metadata.json``, a DFDC root if it holds ``dfdc_train_part_*``
    folders, an FF++ root if it holds ``original_sequences`` or ``manipulated_sequences``, a Celeb-DF
    root if it holds ``Celeb-real`` / ``Celeb-synthesis`` / ``YouTube-real``, else a plain folder of
    videos. Two inputs mapping to the same output folder: the later one is a ``duplicate``.
    """
    items: list[VideoItem] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        if path.is_file():
            items.append(file_item(path))
        elif (path / "metadata.json").is_file():
            items += dfdc_part_items(path)
        elif parts := sorted(p for p in path.glob("dfdc_train_part_*") if (p / "metadata.json").is_file()):
            for part in parts:
                items += dfdc_part_items(part)
        elif (path / "original_sequences").is_dir() or (path / "manipulated_sequences").is_dir():
            items += ffpp_items(path)
        elif any((path / name).is_dir() for name in CELEBDF_FOLDERS):
            items += celebdf_items(path)
        else:
            items += folder_items(path)
    return _mark_duplicates(items)


def _mark_duplicates(items: list[VideoItem]) -> list[VideoItem]:
    seen: dict[str, Path] = {}
    out = []
    for item in items:
        if item.rel_dir in seen and not item.problem:
            reason = f"{item.path}: output folder {item.rel_dir} already taken by {seen[item.rel_dir]}"
            item = VideoItem(**{**item.__dict__, "problem": ("duplicate", reason)})
        seen.setdefault(item.rel_dir, item.path)
        out.append(item)
    return out


def shard(items: list[VideoItem], index: int, count: int) -> list[VideoItem]:
    """The items of shard ``index`` of ``count``: by a stable hash of ``rel_dir``, so every machine
    computes the same split with no coordination and the shards partition the input exactly."""
    if not 0 <= index < count:
        raise ValueError(f"--shard must be in [0, {count}), got {index}")
    return [it for it in items if zlib.crc32(it.rel_dir.encode()) % count == index]
