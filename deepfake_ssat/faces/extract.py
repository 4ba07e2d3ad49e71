"""Per-video face extraction (decode -> detect -> track -> square crops + manifest) and the batch runner.

One video's output is ``<out>/<item.rel_dir>/`` (key rules: :mod:`deepfake_ssat.faces.inputs`): its square
face crops, named by frame index, in one container (``crops.tar``; formats: :mod:`.store`) and ``manifest.json``;
written atomically and skipped on rerun when already done (:func:`extract_video`, :func:`_finished`).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .. import __version__
from ..io import atomic_write_json, first_line, is_inside, make_temp_dir, sha256_file
from .inputs import VideoItem
from .detect import (DEFAULT_THRESHOLDS, FaceDetector, FrameFaces, Track, link_tracks, main_track, smallest_face,
                     square_crop_box)
from .sampling import SamplingPolicy
from .video import BACKENDS, VideoFailure, open_video  # re-exported for callers
from .store import (DEFAULT_FORMAT, StoreError, append_row, format_params, index_lock, index_row, read_index,
                    walk_rows, write_crops, write_rows)


DETECTOR = "mtcnn-fullres-judge"  # how faces are found (stored with the parameters: a change redoes old videos)


@dataclass(frozen=True)
class ExtractionParams:
    """Everything that changes the crops; a manifest with other parameters is redone on rerun.

    ``min_face_fraction`` / ``min_face_size``: MTCNN looks for faces down to that fraction of the frame's shorter
    side, never below that many pixels (:func:`.detect.smallest_face`: 54 px in 1080p, 36 in 720p); ``thresholds``:
    its three stages' probabilities.
    ``crop_scale``: square side = ``max(w, h) * crop_scale``; ``crop_size``: output side in pixels.
    ``keep``: ``largest`` (the most persistent, then largest, track) or ``all`` tracks.
    ``store``: how the crops are saved, ``tar`` | ``npy`` | ``png`` | ``jpg`` (:mod:`.store`).
    """
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    min_face_fraction: float = 0.05
    min_face_size: int = 20
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    crop_scale: float = 1.3
    crop_size: int = 224
    keep: str = "largest"
    store: str = DEFAULT_FORMAT
    video_backend: str = field(default="decord", compare=False)  # how frames are decoded, not what: not in to_dict

    def __post_init__(self) -> None:
        if self.keep not in ("largest", "all"):
            raise ValueError(f"keep must be 'largest' or 'all', got {self.keep!r}")
        format_params(self.store)  # ValueError for an unknown format
        if self.video_backend not in BACKENDS:
            raise ValueError(f"video_backend must be one of {', '.join(BACKENDS)}, got {self.video_backend!r}")
        if self.crop_scale <= 0 or self.crop_size < 1 or self.min_face_size < 1:
            raise ValueError("crop_scale, crop_size and min_face_size must be positive")
        if not 0 <= self.min_face_fraction < 1:
            raise ValueError(f"min_face_fraction must be in [0, 1), got {self.min_face_fraction}")

    def to_dict(self) -> dict:
        return {"sampling": self.sampling.to_dict(), "detector": DETECTOR, "min_face_fraction": self.min_face_fraction,
                "min_face_size": self.min_face_size, "thresholds": list(self.thresholds),
                "crop_scale": self.crop_scale, "crop_size": self.crop_size, "keep": self.keep,
                **format_params(self.store)}

    def detector(self, device: str) -> FaceDetector:
        return FaceDetector(device, self.min_face_size, self.min_face_fraction, self.thresholds)


def load_manifest(path: Path) -> dict | None:
    """The manifest at ``path``, or None if it is missing or unreadable (then the video is redone)."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _finished(final: Path, manifest: dict | None, params: ExtractionParams, item: VideoItem,
              out_root: Path) -> dict | None:
    """``manifest`` (the one in ``final``, None: none readable) if it holds ``item``'s video extracted with
    ``params``, else None.

    Rerun rule: a folder whose manifest has the same parameters and the same source size is done if the
    source's mtime is unchanged too; if only the mtime changed (``touch``, a copy), the source's sha256
    decides (a match updates the stored mtime, so the next rerun is cheap again). A video replaced by
    one of the same size is re-extracted unless its mtime was also restored. A finished video whose identity
    changed (a label, group or split edited in a video list) gets the new identity in its manifest and index row.
    """
    source = item.path
    if manifest is None or manifest.get("params") != params.to_dict():
        return None
    stored = manifest.get("source") or {}
    try:
        stat = source.stat()
        if stored.get("size") != stat.st_size:
            return None
        same = stored.get("mtime_ns") == stat.st_mtime_ns
        if not same and stored.get("sha256") != sha256_file(source):
            return None
    except OSError:
        return None
    identity = item.identity()
    relabelled = any(manifest.get(k) != v for k, v in identity.items())
    if not same or relabelled:
        stored["mtime_ns"] = stat.st_mtime_ns
        manifest.update(identity)
        atomic_write_json(final / "manifest.json", manifest)
    if relabelled:
        _index_video(out_root, item.rel_dir, manifest)
    return manifest


def _index_video(out_root: Path, rel: str, manifest: dict) -> None:
    """Append the video's row to the store's index now (when it has one), so a killed run loses no finished video;
    the batch's closing :func:`update_index` rewrites the index one row per folder."""
    with index_lock(out_root):
        append_row(out_root, index_row(manifest, rel))


def _kept_tracks(tracks: list[Track], faces: list[FrameFaces], keep: str) -> list[Track]:
    if keep == "all":
        return tracks
    best = main_track(tracks, faces)
    return [best] if best else []


def _write_crops(folder: Path, frames: list[np.ndarray], indices: list[int], faces: list[FrameFaces],
                 tracks: list[Track], params: ExtractionParams) -> tuple[str | None, list[dict]]:
    """Crop, resize and save every kept detection into ``folder`` (:func:`.store.write_crops`, a track's crops
    in frame order); returns the container's name (None: one image per crop) and one manifest entry each.

    ``frames``: (H, W, 3) uint8 RGB, one per sampled index.
    """
    height, width = frames[0].shape[:2]
    entries, crops = [], []
    for track in tracks:
        for pos, det in sorted(track.members.items()):
            x1, y1, x2, y2 = square_crop_box(faces[pos].boxes[det], params.crop_scale, width, height)
            crop = frames[pos][y1:y2, x1:x2]
            interp = cv2.INTER_AREA if crop.shape[0] > params.crop_size else cv2.INTER_LINEAR
            suffix = "" if params.keep == "largest" else f"_t{track.id}"
            crop = cv2.resize(crop, (params.crop_size, params.crop_size), interpolation=interp)
            crops.append((f"{indices[pos]:06d}{suffix}", crop))
            entries.append({"frame": indices[pos], "track": track.id,
                            "box": faces[pos].boxes[det].round(2).tolist(),
                            "score": round(float(faces[pos].scores[det]), 5),
                            "landmarks": faces[pos].landmarks[det].round(2).tolist(),
                            "crop_box": [x1, y1, x2, y2]})
    container, stored = write_crops(folder, params.store, crops)
    entries = [{**entry, **where} for entry, where in zip(entries, stored)]
    return container, sorted(entries, key=lambda e: (e["frame"], e["track"]))


class OutsideOutputError(RuntimeError):
    """A path to be written, renamed or deleted that is not strictly inside the output root (a bug)."""


def _inside(path: Path, out_root: Path) -> Path:
    """``path``, checked to lie strictly inside ``out_root`` once both are resolved."""
    if not is_inside(path, out_root):
        raise OutsideOutputError(f"{path}: not inside the output folder {out_root}; refusing to write, "
                                 f"rename or delete it (a bug: please report it)")
    return path


def _temp_prefix(final: Path) -> str:
    return f".{final.name}.tmp-"


def _make_temp(final: Path, out_root: Path) -> Path:
    """A fresh hidden temp folder next to ``final`` (umask permissions)."""
    prefix = _temp_prefix(final)
    _inside(final.parent / prefix, out_root)
    return make_temp_dir(final.parent, prefix)


def _remove_stale(final: Path, out_root: Path) -> None:
    """Delete the temp folders a killed run left for ``final`` (``.<name>.tmp-<random, no dot>``: not
    those of a video whose name merely starts with ``<name>.tmp-``)."""
    prefix = _temp_prefix(final)
    with os.scandir(final.parent) as entries:
        stale = [Path(e.path) for e in entries if e.name.startswith(prefix) and "." not in e.name[len(prefix):]]
    for path in stale:
        shutil.rmtree(_inside(path, out_root), ignore_errors=True)


def _publish(tmp: Path, final: Path, out_root: Path) -> None:
    """Move the finished temp folder to ``final``, replacing an older extraction there."""
    _inside(tmp, out_root)
    _inside(final, out_root)
    if not (final.exists() or final.is_symlink()):
        os.replace(tmp, final)
        return
    old = _make_temp(final, out_root)
    os.replace(final, old / "old")
    os.replace(tmp, final)
    shutil.rmtree(_inside(old, out_root))


def _record(item: VideoItem, status: str, reason: str | None, num_crops: int = 0,
            skipped: bool = False, manifest: dict | None = None, redone: bool = False) -> dict:
    """A video's summary record; ``face_share``: the share of its sampled frames with a kept face (None when
    nothing was decoded); ``redone``: an earlier extraction with other parameters was replaced."""
    share = None
    if manifest is not None and manifest.get("sampled"):
        share = round(len({c["frame"] for c in manifest["crops"]}) / len(manifest["sampled"]), 4)
    return {"key": item.rel_dir, "source": str(item.path), "status": status, "reason": reason,
            "num_crops": num_crops, "skipped": skipped, "face_share": share, "redone": redone}


def extract_video(item: VideoItem, out_root: Path, params: ExtractionParams, detector: FaceDetector) -> dict:
    """Extract one video into ``out_root / item.rel_dir``; returns its summary record.

    Record: ``key``, ``source``, ``status`` (ok | no_face | unreadable | missing | bad_metadata |
    duplicate), ``reason`` (one line or None), ``num_crops``, ``skipped`` (finished by an earlier run).
    Raises :class:`OutsideOutputError` if ``item.rel_dir`` does not lead strictly inside ``out_root``.

    Output: one crop per kept face per sampled frame, named by the original frame index (``000123.jpg``;
    ``000123_t1.jpg`` with ``keep="all"``), stored as ``params.store`` says (the default: all in ``crops.tar``,
    whose byte spans the manifest records), and ``manifest.json`` (key, source path, size, mtime, sha256,
    parameters, container, crops). Everything is written into a hidden temp folder
    ``.<name>.tmp-XXXXXXXX`` next to the final one and renamed into place when complete, so a killed run
    never leaves a folder that looks done; stale temp folders are removed by the next run and ignored by
    the index. Folders and files get the umask's permissions (0755 / 0644 by default). Nothing is ever
    renamed or deleted outside ``out_root``: every such path is checked to lie strictly inside it first
    (:class:`OutsideOutputError` otherwise, recorded as the video's ``error`` by :func:`safe_extract`).
    Rerun rules: :func:`_finished`.
    """
    if item.problem:
        return _record(item, *item.problem)
    final = _inside(out_root / item.rel_dir, out_root)
    earlier = load_manifest(final / "manifest.json")
    done = _finished(final, earlier, params, item, out_root)
    if done is not None:
        return _record(item, done["status"], done.get("reason"), len(done["crops"]), skipped=True, manifest=done)
    redone = earlier is not None and earlier.get("params") != params.to_dict()
    start = time.perf_counter()
    try:
        with open_video(item.path, params.video_backend) as video:
            source = item.path.stat()
            num_frames, fps = len(video), video.fps
            indices = params.sampling.indices(num_frames)
            frames = video.read(indices)
    except VideoFailure as e:
        return _record(item, e.status, e.reason)
    faces = detector.detect(frames)
    tracks = link_tracks(faces)
    kept = _kept_tracks(tracks, faces, params.keep)

    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final, out_root)
    tmp = _make_temp(final, out_root)
    try:
        container, crops = _write_crops(tmp, frames, indices, faces, kept, params)
        requested = params.sampling.requested()
        status, reason = _status(len(indices), requested, num_frames, crops, kept,
                                 lambda: no_face_reason(len(indices), detector, frames[0]))
        manifest = {
            "tool": "deepfake_ssat.faces", "version": __version__, "status": status, "reason": reason,
            "key": item.rel_dir,
            "source": {"path": str(item.path.resolve()), "size": source.st_size, "mtime_ns": source.st_mtime_ns,
                       "sha256": sha256_file(item.path)},
            **item.identity(),
            "fps": float(fps), "num_frames": num_frames, "decoder": params.video_backend,
            "width": int(frames[0].shape[1]), "height": int(frames[0].shape[0]),
            "frames_requested": requested, "sampled": indices,
            "clips": params.sampling.clip_lists(num_frames) if params.sampling.clips else None,
            "frames_without_face": sorted(set(indices) - {c["frame"] for c in crops}),
            "num_tracks": len(tracks), "kept_tracks": [t.id for t in kept],
            "container": container, "crops": crops, "params": params.to_dict(),
            "seconds": round(time.perf_counter() - start, 3),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        _publish(tmp, final, out_root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _index_video(out_root, item.rel_dir, manifest)
    return _record(item, status, reason, len(crops), manifest=manifest, redone=redone)


def _searched(detector: FaceDetector, frame: np.ndarray) -> float:
    """Pixels of the smallest face ``detector`` looks for in frames like ``frame``."""
    height, width = frame.shape[:2]
    return smallest_face(width, height, detector.min_face_size, detector.min_face_fraction)


def no_face_reason(sampled: int, detector: FaceDetector, frame: np.ndarray) -> str:
    """One line for a video where ``detector`` found no face in ``sampled`` frames (like ``frame``): the smallest
    face size searched and, when there was one, the likeliest candidate its last stage turned down."""
    reason = f"no face found in {sampled} sampled frames (faces of {_searched(detector, frame):.0f} px and up searched"
    rejected = detector.last_rejected
    if rejected is not None:
        side = max(rejected[2] - rejected[0], rejected[3] - rejected[1])
        reason += (f"; the likeliest candidate, {side:.0f} px, had probability {rejected[4]:.2f}, below the "
                   f"threshold {detector.cascade.thresholds[2]:g}")
    return reason + ")"


def _status(sampled: int, requested: int, num_frames: int, crops: list[dict], kept: list[Track],
            no_face: Callable[[], str]) -> tuple[str, str | None]:
    if not kept:
        return "no_face", no_face()
    notes = []
    if sampled < requested:
        notes.append(f"video has {num_frames} frames: {sampled} sampled of {requested} asked")
    with_face = len({c["frame"] for c in crops})
    if with_face < sampled:
        notes.append(f"no face in {sampled - with_face} of {sampled} sampled frames")
    return "ok", "; ".join(notes) or None


def safe_extract(item: VideoItem, out_root: Path, params: ExtractionParams, detector: FaceDetector) -> dict:
    """:func:`extract_video`, with any unexpected error recorded as status ``error`` (one line)."""
    try:
        return extract_video(item, out_root, params, detector)
    except Exception as e:
        return _record(item, "error", f"{item.path}: {type(e).__name__}: {first_line(e)}")


_WORKER: dict = {}


def worker_device(device: str, worker: int, gpus: int) -> str:
    """The device of extraction worker ``worker``: plain ``cuda`` spreads the workers over the ``gpus`` visible
    GPUs (``cuda:0``, ``cuda:1``, ... in turn); ``cuda:N`` and ``cpu`` are kept as given."""
    return f"cuda:{worker % gpus}" if device == "cuda" and gpus > 1 else device


def _init_worker(params: ExtractionParams, device: str, threads: int, counter) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: a worker finishes its video
    torch.set_num_threads(threads)
    with counter.get_lock():
        worker, counter.value = counter.value, counter.value + 1
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    _WORKER["detector"] = params.detector(worker_device(device, worker, gpus))


def _work(item: VideoItem, out_root: Path, params: ExtractionParams) -> dict:
    return safe_extract(item, out_root, params, _WORKER["detector"])


def extract_all(items: list[VideoItem], out_root: Path, params: ExtractionParams, report: Callable[[dict], None],
                device: str = "cpu", workers: int = 1) -> None:
    """``report`` one record per item (completion order); ``workers > 1`` runs videos in parallel processes
    (with ``device`` ``cuda``, spread over every visible GPU: :func:`worker_device`).

    On Ctrl-C (``KeyboardInterrupt``, re-raised) the worker pool drops the queued videos and lets the
    running ones finish (reported too): nothing is left half-written.
    """
    pending = [it for it in items if not it.problem]
    for item in items:
        if item.problem:
            report(_record(item, *item.problem))
    if workers <= 1:
        detector = params.detector(device) if pending else None
        for item in pending:
            report(safe_extract(item, out_root, params, detector))
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(params, device, threads, context.Value("i", 0))) as pool:
        futures = [pool.submit(_work, item, out_root, params) for item in pending]
        reported = set()
        try:
            for future in as_completed(futures):
                reported.add(future)
                report(future.result())
        except KeyboardInterrupt:
            pool.shutdown(cancel_futures=True)
            for future in futures:
                if future not in reported and not future.cancelled() and future.exception() is None:
                    report(future.result())
            raise


def write_index(out_root: Path, left_out: list[str] | None = None) -> int:
    """Rebuild ``out_root/index.jsonl`` from every manifest under ``out_root`` (a tree walk: ``--reindex``);
    returns its rows. Tolerates folders and manifests that vanish while it reads (a concurrent shard replacing
    a video); an unreadable or unsafe manifest is left out, with its one-line reason in ``left_out``."""
    with index_lock(out_root):
        rows = walk_rows(out_root, left_out=left_out)
        write_rows(out_root, rows)
    return len(rows)


def _current_rows(out_root: Path) -> list[dict] | None:
    """The index's rows, or None without a current index (none yet, an older version's, an unreadable one)."""
    try:
        return read_index(out_root)
    except StoreError:
        return None


def open_index(out_root: Path) -> None:
    """Make sure ``out_root`` has a current index before a batch appends its videos to it: a store without one
    gets it from a walk of its manifests."""
    with index_lock(out_root):
        if _current_rows(out_root) is None:
            write_rows(out_root, walk_rows(out_root))


def update_index(out_root: Path, dirs: set[str]) -> int:
    """Put the videos ``dirs`` (folders relative to ``out_root``) into ``out_root/index.jsonl`` as their manifests
    now say (dropping those without one); returns its rows.

    Concurrent shards each merge their own videos under :func:`.store.index_lock`, so the index ends up listing
    every shard's. Without a current index (none yet, an older version's, an unreadable one) it is rebuilt by
    walking the whole tree once, so that videos extracted before are kept.
    """
    with index_lock(out_root):
        current = _current_rows(out_root)
        if current is None:
            rows = walk_rows(out_root)
        else:
            rows = [row for row in current if row["dir"] not in dirs]
            for rel in sorted(d for d in dirs if is_inside(out_root / d, out_root)):
                manifest = load_manifest(out_root / rel / "manifest.json")
                if manifest is not None and manifest.get("tool") == "deepfake_ssat.faces":
                    rows.append(index_row(manifest, rel))
        write_rows(out_root, rows)
    return len(rows)


def summary_name(shard_index: int, num_shards: int) -> str:
    """``summary.json``, or ``summary.shard-I-of-N.json`` so that concurrent shards never collide."""
    return "summary.json" if num_shards == 1 else f"summary.shard-{shard_index}-of-{num_shards}.json"


LOW_FACE_SHARE = 0.5  # a video with a kept face in fewer of its sampled frames is named in a warning


def low_share_warning(record: dict) -> str:
    """One line naming a video where a face was kept in under half of the sampled frames."""
    return (f"warning: {record['key']}: a face in only {record['face_share']:.0%} of the sampled frames "
            f"({record['source']}); its clips may be short")


def face_share_summary(records: list[dict]) -> dict:
    """``mean`` share of sampled frames with a kept face over the decoded videos (None without any) and the videos
    under :data:`LOW_FACE_SHARE` (key -> share; no_face videos are counted by their status instead)."""
    shares = [r["face_share"] for r in records if r.get("face_share") is not None]
    low = {r["key"]: r["face_share"] for r in records
           if r["status"] == "ok" and r.get("face_share") is not None and r["face_share"] < LOW_FACE_SHARE}
    return {"mean": round(float(np.mean(shares)), 4) if shares else None, "videos_under_half": low}


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_batch`; ``records``: the videos finished (or skipped) before it."""

    def __init__(self, records: list[dict]) -> None:
        super().__init__(f"interrupted after {len(records)} videos")
        self.records = records


def run_batch(items: list[VideoItem], out_root: Path, params: ExtractionParams, device: str = "cpu",
              workers: int = 1, shard_index: int = 0, num_shards: int = 1, progress: bool = True) -> dict:
    """Extract ``items`` into ``out_root``, write the summary and merge the videos into ``index.jsonl``; returns the
    summary. The index is made current first (:func:`open_index`), each video is appended to it as soon as it is
    finished (a killed batch loses none), and :func:`update_index` ends the batch (also on Ctrl-C).

    Per-video failures are recorded (status + one-line reason) and the batch goes on. Ctrl-C raises
    :class:`BatchInterrupted` (no summary written); finished videos stay complete, none is half-written.
    """
    from tqdm import tqdm

    out_root.mkdir(parents=True, exist_ok=True)
    open_index(out_root)
    start = time.perf_counter()
    records: list[dict] = []
    try:
        with tqdm(total=len(items), unit="video", desc="faces", disable=not progress, dynamic_ncols=True) as bar:
            tally = {"faces": 0, "failed": 0}
            shares: list[float] = []

            def report(record: dict) -> None:
                records.append(record)
                tally["faces"] += record["num_crops"]
                tally["failed"] += record["status"] not in ("ok", "no_face")
                if record["face_share"] is not None:
                    shares.append(record["face_share"])
                    if record["status"] == "ok" and record["face_share"] < LOW_FACE_SHARE:
                        tqdm.write(low_share_warning(record), file=sys.stderr)
                bar.update()
                bar.set_postfix({**tally, "with_face": f"{np.mean(shares):.0%}" if shares else "-"})

            extract_all(items, out_root, params, report, device, workers)
        counts: dict[str, int] = {}
        for record in records:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        summary = {
            "version": __version__, "out": str(out_root), "shard": {"index": shard_index, "count": num_shards},
            "params": params.to_dict(), "num_videos": len(records), "counts": counts,
            "skipped": sum(r["skipped"] for r in records), "num_crops": tally["faces"],
            "frames_with_face": face_share_summary(records),
            "redone": sum(r.get("redone", False) for r in records),
            "seconds": round(time.perf_counter() - start, 3),
            "videos": sorted(records, key=lambda r: r["key"]),
        }
        atomic_write_json(out_root / summary_name(shard_index, num_shards), summary)
        if summary["redone"]:
            tqdm.write(f"note: {summary['redone']} videos had been extracted with other parameters (another face "
                       f"detector or settings); they were extracted again", file=sys.stderr)
        summary["index_lines"] = update_index(out_root, {r["key"] for r in records})
    except KeyboardInterrupt:
        update_index(out_root, {r["key"] for r in records})  # the finished videos are usable right away
        raise BatchInterrupted(records) from None
    return summary
