"""Input discovery for face extraction: a video file, a folder of videos (recursive), a DFDC part / root,
an FF++ root, a Celeb-DF root. Every video becomes a :class:`VideoItem` whose ``rel_dir`` (its output folder
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
    ``rel_dir`` (the output key) is ``<folder>/<relative path>`` for a plain folder, ``<parent>/<stem>``
    for a single file, ``dfdc/<part>/<stem>``, ``ffpp/<method>/<compression>/<stem>``,
    ``celebdf/<folder>/<stem>``. A problem found while listing (e.g. a DFDC video missing from
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
    problem: tuple[str, str] | None = None

    def identity(self) -> dict:
        """The fields that name this video in manifests and the index."""
        return {"dataset": self.dataset, "method": self.method, "compression": self.compression,
                "video_id": self.video_id, "part": self.part, "label": self.label, "original": self.original}


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


def _input_items(path: Path) -> list[VideoItem]:
    """The videos of one input (a file, a DFDC part or root, an FF++ or Celeb-DF root, a plain folder)."""
    if path.is_file():
        return [file_item(path)]
    if (path / "metadata.json").is_file():
        return dfdc_part_items(path)
    if parts := sorted(p for p in path.glob("dfdc_train_part_*") if (p / "metadata.json").is_file()):
        return [item for part in parts for item in dfdc_part_items(part)]
    if (path / "original_sequences").is_dir() or (path / "manipulated_sequences").is_dir():
        return ffpp_items(path)
    if any((path / name).is_dir() for name in CELEBDF_FOLDERS):
        return celebdf_items(path)
    return folder_items(path)


def discover(inputs: list[str | Path], allow_empty: bool = True) -> list[VideoItem]:
    """All videos of ``inputs``; raises :class:`InputError` for a path that does not exist, and
    :class:`NoVideosError` for an input without any video unless ``allow_empty``.

    A folder is a DFDC part if it holds ``metadata.json``, a DFDC root if it holds ``dfdc_train_part_*``
    folders, an FF++ root if it holds ``original_sequences`` or ``manipulated_sequences``, a Celeb-DF
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
    items: list[VideoItem] = []
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
