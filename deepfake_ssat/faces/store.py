"""The face store on disk: each video's crops in one container file, and one index for the whole store.

``--format tar`` (default): an uncompressed tar of JPEG crops (quality 95, ``tar tf`` lists them) whose member
offsets are in the manifest, so a clip is one open and one read; ``npy``: one uint8 [N, S, S, 3] array (no
decode but ~S²·3 bytes a crop: > 500 GB for DFDC at 32 × 224²); ``png`` / ``jpg``: one image file per crop.
``index.jsonl`` at the root holds one :func:`index_row` per finished video; readers need nothing else. Each video
is appended as soon as it is finished (a killed extraction loses none), and a batch ends by rewriting the index
sorted, one row per folder.
"""
from __future__ import annotations

import fcntl
import io
import json
import os
import tarfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import cv2
import numpy as np

from ..io import atomic_write, atomic_write_text, find_files, paused_gc
from .inputs import IDENTITY_FIELDS

FORMATS = ("tar", "npy", "png", "jpg")
DEFAULT_FORMAT = "tar"
JPEG_QUALITY = 95
INDEX_NAME = "index.jsonl"
CONTAINERS = {"tar": "crops.tar", "npy": "crops.npy"}
_MEMBER_FORMAT = {"tar": "jpg", "npy": "raw", "png": "png", "jpg": "jpg"}  # how one crop is encoded
_ROW_FIELDS = (*IDENTITY_FIELDS, "status", "fps", "num_frames", "clips", "params", "container")
_REQUIRED = ("dir", "status", "params", "frames", "files", "tracks")  # rows of older index versions lack some
_NOT_NAMES = {"", ".", ".."}  # path parts that name no file of a folder


class StoreError(ValueError):
    """A container or index that cannot be read; one line naming the file."""


def format_params(store: str) -> dict:
    """The extraction parameters that name a store format: ``image_format`` of each crop (``jpg``, ``png`` or
    ``raw`` uint8) and, for a container, ``store`` (``tar`` / ``npy``); png / jpg give today's parameters."""
    if store not in FORMATS:
        raise ValueError(f"store format must be one of {FORMATS}, got {store!r}")
    return {"image_format": _MEMBER_FORMAT[store], **({"store": store} if store in CONTAINERS else {})}


def write_crops(folder: Path, store: str, crops: list[tuple[str, np.ndarray]]) -> tuple[str | None, list[dict]]:
    """Save ``crops`` (name stem, (S, S, 3) uint8 RGB) into ``folder`` in format ``store``.

    Returns the container's file name (None for one image per crop, and when there is no crop) and per crop
    ``{"file": name}`` plus, in a container, ``offset`` and ``size``: where its bytes lie in the container. The
    container is written to a temp file, fsynced and renamed (:func:`deepfake_ssat.io.atomic_write`).
    """
    image_format = _MEMBER_FORMAT[store]
    if not crops:
        return None, []
    if store not in CONTAINERS:  # as before the store existed (OpenCV's JPEG quality is 95 too)
        for stem, crop in crops:
            path = folder / f"{stem}.{image_format}"
            if not cv2.imwrite(str(path), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR)):
                raise OSError(f"{path}: cannot write image")
        return None, [{"file": f"{stem}.{image_format}"} for stem, _ in crops]
    path = folder / CONTAINERS[store]
    if store == "tar":
        members = []
        for stem, crop in crops:
            data = _encode_jpeg(crop)
            if data is None:
                raise OSError(f"{path}: cannot encode crop {stem} as JPEG")
            members.append((f"{stem}.jpg", data.tobytes()))
        entries: list[dict] = []
        atomic_write(path, lambda f: entries.extend(_write_tar(f, members)))
        return path.name, entries
    array = np.stack([crop for _, crop in crops])
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))
    start, size = path.stat().st_size - array.nbytes, array[0].nbytes
    return path.name, [{"file": stem, "offset": start + i * size, "size": size} for i, (stem, _) in enumerate(crops)]


def _encode_jpeg(crop: np.ndarray) -> np.ndarray | None:
    """A crop [S, S, 3] uint8 RGB as the store's JPEG bytes (quality 95, OpenCV's encoder as ``cv2.imwrite``)."""
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return data if ok else None


def as_stored(crop: np.ndarray, store: str) -> np.ndarray:
    """A face crop [S, S, 3] uint8 RGB exactly as a reader of a ``store`` format store gets it back: ``tar`` and
    ``jpg`` keep JPEG (quality 95) crops, ``png`` and ``npy`` lossless ones. The video detector passes its crops
    through this, so a model sees at inference the crops it was trained on."""
    if _MEMBER_FORMAT[store] != "jpg":
        return crop
    data = _encode_jpeg(crop)
    if data is None:
        raise ValueError(f"cannot encode a {crop.shape} {crop.dtype} crop as JPEG")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def store_format(params: dict) -> str:
    """The ``--format`` an extraction's ``params`` (as its manifests record them) name: ``store`` for a
    container, else the crops' ``image_format`` (``png`` / ``jpg``, or ``png`` for stores older than the field)."""
    return params.get("store") or params.get("image_format") or "png"


def _write_tar(f: BinaryIO, members: list[tuple[str, bytes]]) -> list[dict]:
    """An uncompressed POSIX tar of ``members`` (name, bytes) on ``f``; returns each member's data span."""
    entries, now = [], int(time.time())
    with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
            padded = -(-len(data) // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
            entries.append({"file": name, "offset": tar.offset - padded, "size": len(data)})
    return entries


@dataclass(frozen=True)
class Container:
    """One video's crop container: its ``path``, how a crop is encoded (``image_format``: ``jpg`` in a tar, ``raw``
    uint8 in an npy) and the crop ``side`` in pixels."""
    path: Path
    image_format: str
    side: int

    def read(self, spans: np.ndarray) -> np.ndarray:
        """The crops at ``spans`` [N, 2] (byte offset, size) -> [N, S, S, 3] uint8 RGB: one open, one read.

        Raises :class:`StoreError` naming the file when it is missing, truncated or holds something else there.
        """
        lo, hi = int(spans[:, 0].min()), int((spans[:, 0] + spans[:, 1]).max())
        try:
            with open(self.path, "rb") as f:
                f.seek(lo)
                data = f.read(hi - lo)
        except OSError as e:
            raise self._error(f"cannot read it: {e.strerror or e}") from None
        if len(data) < hi - lo:
            raise self._error(f"truncated: {lo + len(data)} bytes, the crops need {hi}")
        out = np.empty((len(spans), self.side, self.side, 3), np.uint8)
        buf = np.frombuffer(data, np.uint8)
        for i, (offset, size) in enumerate(spans.tolist()):
            member = buf[offset - lo:offset - lo + size]
            if self.image_format == "raw":
                out[i] = member.reshape(out.shape[1:])
                continue
            image = cv2.imdecode(member, cv2.IMREAD_COLOR)
            if image is None or image.shape != out.shape[1:]:
                raise self._error(f"no {self.side}x{self.side} {self.image_format} image at byte {offset}")
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out[i])
        return out

    def _error(self, what: str) -> StoreError:
        return StoreError(f"{self.path}: corrupt crop container ({what}); re-run dfssat-extract-faces on that "
                          f"video, or dfssat-extract-faces --reindex <root> if the index is out of date")


def container_of(folder: Path, row: dict) -> Container | None:
    """The :class:`Container` of an index row's video in ``folder``, or None when it stores one file per crop."""
    if not row.get("container"):
        return None
    params = row["params"]
    return Container(folder / row["container"], params["image_format"], int(params["crop_size"]))


# ---------------------------------------------------------------------------------------------
# The index


def index_row(manifest: dict, rel: str) -> dict:
    """The index row of a video folder ``rel`` (relative to the root) from its manifest.

    Identity (:data:`IDENTITY_FIELDS`), ``status``, ``fps``, ``num_frames``, ``clips``, ``params``, ``container``,
    ``dir``, ``num_crops`` and per crop (parallel lists) ``frames``, ``files``, ``tracks``, plus ``offsets`` and
    ``sizes`` in a container: everything a reader needs without opening the manifest.
    """
    crops = manifest.get("crops") or []
    row = {k: manifest.get(k) for k in _ROW_FIELDS}
    row.update(dir=rel, num_crops=len(crops), frames=[c["frame"] for c in crops], files=[c["file"] for c in crops],
               tracks=[c["track"] for c in crops])
    if row["container"]:
        row.update(offsets=[c["offset"] for c in crops], sizes=[c["size"] for c in crops])
    return row


def row_problem(row: object) -> str | None:
    """Why an index row (or a manifest's :func:`index_row`) cannot be read safely, or None: its ``dir`` must be a
    relative folder inside the store, its ``container`` one of :data:`CONTAINERS`' names, and each crop file a plain
    name in that folder. A store may come from someone else: no row may point a reader outside it."""
    if not isinstance(row, dict):
        return "not a JSON object"
    folder, container, files = row.get("dir"), row.get("container"), row.get("files")
    if not isinstance(folder, str) or (folder != "." and not _relative_folder(folder)):
        return f"folder {folder!r} is not a folder inside the store"
    if container is not None and container not in CONTAINERS.values():
        return f"container {container!r} is not one of {sorted(CONTAINERS.values())}"
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return "crop files are not a list of names"
    joined = "".join(files)  # one scan of every name, not one per crop: the index of a large store is long
    if "/" in joined or "\\" in joined or _NOT_NAMES & set(files):
        bad = next(f for f in files if f in _NOT_NAMES or "/" in f or "\\" in f)
        return f"crop file {bad!r} is not a plain name in its folder"
    for key in ("frames", "tracks", *(("offsets", "sizes") if container else ())):
        values = row.get(key)
        if not isinstance(values, list) or len(values) != len(files) or not set(map(type, values)) <= {int} \
                or (values and min(values) < 0):
            return f"{key} is not a list of {len(files)} non-negative integers, one per crop file"
    return None


def _relative_folder(rel: str) -> bool:
    """``a/b/c``: relative, POSIX, no empty, ``.`` or ``..`` part."""
    return "\\" not in rel and not (_NOT_NAMES & set(rel.split("/")))


@paused_gc()
def read_index(root: Path) -> list[dict] | None:
    """The rows of ``root/index.jsonl``, one per folder (the last one appended wins), sorted by folder; None when
    it is missing or written by an older version (rows without ``params``, or container rows without offsets).

    A last line without its newline is an append still being written (or cut short by a killed extraction) and is
    left out. :class:`StoreError` for any other line that is not a row, or whose paths leave the store
    (:func:`row_problem`).
    """
    index = root / INDEX_NAME
    try:
        lines = open(index, encoding="utf-8", errors="replace")  # (undecodable bytes: a line that is not a row)
    except FileNotFoundError:
        return None
    rows = {}
    with lines:  # line by line, not the whole text at once: DFDC's index is ~190 MB
        for n, line in enumerate(lines, 1):
            if not line.strip() or not line.endswith("\n"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if not isinstance(row, dict):
                raise StoreError(f"{index}: line {n} is not an index row; rebuild the index with "
                                 f"dfssat-extract-faces --reindex {root}")
            if not all(k in row for k in _REQUIRED) or (row.get("container") and "offsets" not in row):
                return None
            problem = row_problem(row)
            if problem:
                raise StoreError(f"{index}: line {n}: {problem}; rebuild the index with "
                                 f"dfssat-extract-faces --reindex {root}")
            rows[row["dir"]] = row
    return [rows[d] for d in sorted(rows)]


@paused_gc()
def walk_rows(root: Path, strict: bool = False, left_out: list[str] | None = None) -> list[dict]:
    """Index rows from every ``manifest.json`` under ``root`` (a full tree walk), sorted by folder.

    Manifests that vanish while the walk runs (another shard replacing a video) are skipped. An unreadable or
    unsafe one (:func:`row_problem`) raises :class:`StoreError` with ``strict``; otherwise it is left out and
    its one-line reason appended to ``left_out``.
    """
    rows = []
    for path in find_files(root, "manifest.json"):
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as e:
            problem = f"unreadable manifest ({e})"
        else:
            if not isinstance(manifest, dict) or manifest.get("tool") != "deepfake_ssat.faces":
                continue
            try:
                row = index_row(manifest, path.parent.relative_to(root).as_posix())
                problem = row_problem(row)
            except (KeyError, TypeError, AttributeError):
                problem = "crops are not a list of {frame, file, track} entries"
            if problem is None:
                rows.append(row)
                continue
        message = f"{path}: {problem}; re-run dfssat-extract-faces on that video"
        if strict:
            raise StoreError(message)
        if left_out is not None:
            left_out.append(message)
    return rows


def write_rows(root: Path, rows: list[dict]) -> None:
    """Replace ``root/index.jsonl`` with ``rows`` (sorted by folder), atomically."""
    lines = [json.dumps(row) + "\n" for row in sorted(rows, key=lambda r: r["dir"])]
    atomic_write_text(root / INDEX_NAME, "".join(lines))


def append_row(root: Path, row: dict) -> bool:
    """Append ``row`` to ``root/index.jsonl`` if there is one (the caller holds :func:`index_lock`); False when
    there is none (readers walk the manifests then). A last line left without its newline by a killed writer is cut
    off first, so a row is never glued to a fragment."""
    try:
        f = open(root / INDEX_NAME, "r+b")
    except FileNotFoundError:
        return False
    with f:
        end = f.seek(0, os.SEEK_END)
        keep = end
        while keep > 0:  # back to just after the last newline
            step = min(keep, 1 << 16)
            f.seek(keep - step)
            chunk = f.read(step)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                keep = keep - step + cut + 1
                break
            keep -= step
        if keep != end:
            f.truncate(keep)
        f.seek(keep)
        f.write((json.dumps(row) + "\n").encode())
    return True


@contextmanager
def index_lock(root: Path) -> Iterator[None]:
    """Hold the store's index lock (``flock`` on ``root/.index.lock``): one writer of the index at a time, so that
    concurrent extraction shards merging their rows never lose each other's."""
    with open(root / ".index.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
