"""The ``store`` benchmark: start-up of a training process on a large face store, with the index vs a tree walk.

A synthetic DFDC-style store of ``videos`` videos (manifests as the extractor writes them, each folder with a
hard link to one real ``crops.tar``) and its index; :func:`scan_extraction` and the DFDC split
(:func:`build_face_clips`) timed reading the index, then reading every manifest; the trainer's whole start on the
store (:func:`~deepfake_ssat.engine.trainer.setup_run`, then its loader's first batch); the cost of a video's record
(row check, packed bytes, unpacking); and bytes per video per format.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..config import find_config, load_config
from ..data import build_face_clips
from ..data.faceclips import PackedVideos, scan_extraction
from ..engine.distributed import DistInfo
from ..engine.trainer import setup_run
from ..faces.extract import write_index
from ..faces.store import CONTAINERS, DEFAULT_FORMAT, FORMATS, INDEX_NAME, read_index, row_problem, write_crops
from ..synthetic.extractions import synthetic_crops, synthetic_manifest
from .header import run_header

LINKS_PER_FILE = 50_000  # hard links to one shared container
TRAIN_CONFIG = "video/tiny/dfdc_videomae_095"  # the trainer whose start is timed (a tiny model: the data's cost shows)


def _manifest_text(video: int, frames: int, crop_size: int, stored: list[dict]) -> str:
    """A manifest of synthetic video ``video`` with what the extractor records per crop (box, score, landmarks,
    crop box) and per video (source, sampling), so that reading it costs what reading a real one does."""
    crops = [{"frame": i * 3, "track": 0, "box": [101.25, 80.5, 180.75, 190.25], "score": 0.99987,
              "landmarks": [[120.5, 120.25], [160.5, 121.75], [140.25, 145.5], [125.75, 170.5], [158.25, 171.0]],
              "crop_box": [70, 60, 212, 202], **where} for i, where in enumerate(stored)]
    manifest = synthetic_manifest(video, frames, crop_size, DEFAULT_FORMAT, CONTAINERS[DEFAULT_FORMAT], crops)
    manifest.update(key=f"dfdc/dfdc_train_part_{video % 3}/v{video:03d}", fps=30.0, num_frames=300, width=1920,
                    height=1080, sampled=[c["frame"] for c in crops], frames_without_face=[], num_tracks=1,
                    kept_tracks=[0], seconds=1.234,
                    source={"path": f"/data/dfdc/dfdc_train_part_{video % 3}/v{video:05d}.mp4", "size": 12345678,
                            "mtime_ns": 1700000000000000000, "sha256": "0" * 64})
    return json.dumps(manifest, indent=2)


def _write_store(root: Path, videos: int, frames: int, crop_size: int) -> None:
    """``videos`` video folders under ``root``: manifest + a hard link to a shared real container (one copy of it
    per :data:`LINKS_PER_FILE` videos: ext4 allows 65,000 links to a file, DFDC has 119,000 videos)."""
    shared, name = root / ".shared", CONTAINERS[DEFAULT_FORMAT]
    shared.mkdir()
    _, stored = write_crops(shared, DEFAULT_FORMAT, [(f"{i * 3:06d}", crop) for i, crop in
                                                     enumerate(synthetic_crops(0, frames, crop_size))])
    for v in range(videos):
        source = shared / f"{v // LINKS_PER_FILE}-{name}"
        if v % LINKS_PER_FILE == 0:
            shutil.copyfile(shared / name, source)
        folder = root / "dfdc" / f"dfdc_train_part_{v % 50}" / f"v{v:05d}"
        folder.mkdir(parents=True)
        os.link(source, folder / name)
        (folder / "manifest.json").write_text(_manifest_text(v, frames, crop_size, stored))


def _timed_scan(root: Path, frames: int, crop_size: int, repeats: int) -> dict[str, float]:
    """Best seconds of :func:`scan_extraction` and of :func:`build_face_clips` (scan + DFDC split) on ``root``, for
    clips of 16 frames (or ``frames``, if fewer)."""
    best, clip_len = {"scan_seconds": float("inf"), "build_seconds": float("inf")}, min(16, frames)
    for _ in range(repeats):
        with contextlib.redirect_stdout(io.StringIO()):  # the [data] lines
            start = time.perf_counter()
            scan_extraction(root, clip_len, 1, crop_size)
            best["scan_seconds"] = min(best["scan_seconds"], time.perf_counter() - start)
            start = time.perf_counter()
            build_face_clips("dfdc", root, crop_size, clip_len)
            best["build_seconds"] = min(best["build_seconds"], time.perf_counter() - start)
    return {k: round(v, 3) for k, v in best.items()}


def _timed_training_start(root: Path, frames: int, crop_size: int) -> dict[str, float]:
    """Seconds for the trainer to start on the store, in this process (page cache warm): ``setup_run`` of
    :data:`TRAIN_CONFIG` (datasets from the index, the data manifest, model, optimizer, loader, run folder), and
    until its loader's first batch."""
    opts = [f"data.root={root}", "train.device=cpu", f"model.num_frames={min(8, frames)}",
            f"model.img_size={min(32, crop_size)}"]
    with tempfile.TemporaryDirectory(prefix="store-bench-run-") as out, contextlib.redirect_stdout(io.StringIO()):
        cfg = load_config(find_config(TRAIN_CONFIG), opts)
        start = time.perf_counter()
        run = setup_run(cfg, Path(out), None, DistInfo(), torch.device("cpu"))
        setup = time.perf_counter() - start
        try:
            next(iter(run.loader))
            first_batch = time.perf_counter() - start
        finally:
            run.writer.close()
    return {"setup_seconds": round(setup, 3), "first_batch_seconds": round(first_batch, 3)}


def _record_costs(root: Path, frames: int, crop_size: int, repeats: int) -> dict[str, float]:
    """What the start-up spends per video record: the safety check of every index row (:func:`row_problem`,
    seconds for all rows), packing every video (:class:`PackedVideos`, seconds), the packed bytes per video and
    the microseconds to unpack one, as a loader worker does for every clip; best of ``repeats``."""
    rows = read_index(root)
    with contextlib.redirect_stdout(io.StringIO()):
        videos, _ = scan_extraction(root, min(16, frames), 1, crop_size)
    check, pack, unpack = float("inf"), float("inf"), float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for row in rows:
            row_problem(row)
        check = min(check, time.perf_counter() - start)
        start = time.perf_counter()
        packed = PackedVideos(videos)
        pack = min(pack, time.perf_counter() - start)
        start = time.perf_counter()
        for i in range(len(packed)):
            packed[i]
        unpack = min(unpack, time.perf_counter() - start)
    return {"row_check_seconds": round(check, 3), "pack_seconds": round(pack, 3),
            "packed_bytes_per_video": round(packed.nbytes() / len(packed)),
            "packed_video_read_us": round(unpack / len(packed) * 1e6, 1)}


def bytes_per_video(frames: int, crop_size: int) -> dict[str, int]:
    """Bytes one video's crops (``frames`` synthetic ``crop_size``² faces) and manifest take in each format."""
    sizes = {}
    with tempfile.TemporaryDirectory(prefix="store-bytes-") as tmp:
        for store in FORMATS:
            folder = Path(tmp) / store
            folder.mkdir()
            _, stored = write_crops(folder, store, [(f"{i * 3:06d}", crop) for i, crop in
                                                    enumerate(synthetic_crops(0, frames, crop_size))])
            (folder / "manifest.json").write_text(_manifest_text(0, frames, crop_size, stored))
            sizes[store] = sum(p.stat().st_size for p in folder.iterdir())
    return sizes


def run_store_benchmark(videos: int = 10_000, frames: int = 32, crop_size: int = 224, repeats: int = 2,
                        command: str | None = None) -> dict[str, Any]:
    """Time a training process's start-up on a synthetic store of ``videos`` videos; returns the JSON-ready result."""
    with tempfile.TemporaryDirectory(prefix="store-bench-") as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        _write_store(root, videos, frames, crop_size)
        written = time.perf_counter() - start
        start = time.perf_counter()
        write_index(root)
        reindex = time.perf_counter() - start
        index_bytes = (root / INDEX_NAME).stat().st_size
        with_index = _timed_scan(root, frames, crop_size, repeats)
        training_start = _timed_training_start(root, frames, crop_size)
        records = _record_costs(root, frames, crop_size, repeats)
        (root / INDEX_NAME).unlink()
        walk = _timed_scan(root, frames, crop_size, repeats)
    return {
        **run_header("store", command),
        "setup": {"videos": videos, "crops_per_video": frames, "crop_size": crop_size, "format": DEFAULT_FORMAT,
                  "repeats": repeats, "timing": "best of repeats, page cache warm"},
        "videos": videos, "write_seconds": round(written, 2), "reindex_seconds": round(reindex, 3),
        "index_bytes": index_bytes, "with_index": with_index, "training_start": training_start, "walk": walk,
        "walk_over_index": round(walk["scan_seconds"] / with_index["scan_seconds"], 2),
        "records": records, "bytes_per_video": bytes_per_video(frames, crop_size),
        "goal": {"training_start.first_batch_seconds": "< a few seconds"},
    }


def format_store(result: dict[str, Any]) -> str:
    """One-line text summary of :func:`run_store_benchmark`."""
    sizes = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in result["bytes_per_video"].items())
    index, walk = result["with_index"], result["walk"]
    return (f"store start-up, {result['videos']} videos: scan {index['scan_seconds']:.2f} s with the index (scan + "
            f"split {index['build_seconds']:.2f} s) vs {walk['scan_seconds']:.2f} s walking every manifest "
            f"(x{result['walk_over_index']:.1f}); the trainer's start to its first batch "
            f"{result['training_start']['first_batch_seconds']:.2f} s; per video: {sizes}")
