"""The ``loader`` benchmark (P5): can one DataLoader worker feed face clips about as fast as the crops decode?

Per store format (``tar``, ``npy``, ``png``, ``jpg``), over a synthetic extraction, single-threaded: reading the
clips' crops as RGB arrays (the decode floor: :func:`~deepfake_ssat.data.faceclips.read_clip` of consecutive
16-frame clips) vs :class:`~deepfake_ssat.data.faceclips.FaceClipDataset` items (augmentation, normalisation,
``(C, T, H, W)`` tensors, float or uint8) read one at a time, as a worker reads them (in this process, seeded per
item by :class:`~deepfake_ssat.data.sampling.SeededItems` with a worker's ``restore=False``, and with a worker's
allocator setting). P5 = loader ÷ decode frames/s.

Then, for the default format, what a GPU step sees: a ``DataLoader`` of 1, 2, ... workers (the trainer's settings:
persistent workers, :func:`~deepfake_ssat.data.workers.init_worker`, uint8 clips) delivering batches of 16
augmented clips to the main process, in clips/s. And the same for the paper's image experiments: images/s one
worker delivers with each training transform, 32² images in batches of 256.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..data.faceclips import FaceClipDataset, read_clip, scan_extraction
from ..data.images import TRAIN_TRANSFORMS, ImageSubset, make_train_transform
from ..data.sampling import EpochSampler, SeededItems
from ..data.workers import init_worker, tune_malloc
from ..faces.store import DEFAULT_FORMAT, FORMATS
from ..synthetic.scenes import astronaut
from ..synthetic.extractions import write_synthetic_extraction
from .header import run_header

GOAL = 0.5  # P5: loader frames/s >= GOAL x decode frames/s, for the default format
BATCH = 16  # clips per batch of the DataLoader runs
IMAGE_SIZE, IMAGE_BATCH = 32, 256  # the image experiments' loader runs (CIFAR-sized images)


def _decode_rate(videos: list, clip_len: int, clips: int) -> Callable[[], float]:
    """A timed pass (frames/s) reading ``clips`` clips of ``clip_len`` consecutive stored crops as RGB arrays."""
    windows = [(v, s, list(range(p, p + clip_len))) for v in videos for s, seg in enumerate(v.segments)
               for p in range(0, len(seg) - clip_len + 1, clip_len)]

    def run() -> float:
        start = time.perf_counter()
        for n in range(clips):
            read_clip(*windows[n % len(windows)])
        return clips * clip_len / (time.perf_counter() - start)
    return run


def _load_rate(dataset: FaceClipDataset, clips: int) -> Callable[[], float]:
    """A timed pass (frames/s) drawing ``clips`` seeded items from ``dataset``, as a loader worker does."""
    items, sampler = SeededItems(dataset, restore=False), EpochSampler(len(dataset), seed=0)

    def run() -> float:
        start, n, epoch = time.perf_counter(), 0, 0
        while n < clips:
            sampler.set_epoch(epoch)
            for key in sampler:
                items[key]
                n += 1
                if n == clips:
                    break
            epoch += 1
        return clips * dataset.num_frames / (time.perf_counter() - start)
    return run


def _workers_rate(dataset: Dataset, workers: int, batch_size: int, batches: int) -> float:
    """Items/s a ``DataLoader`` of ``workers`` processes delivers (after 2 warm-up batches per worker), built as
    the trainer builds its loader."""
    warmup = 2 * workers
    keys = [(n % len(dataset), n) for n in range((warmup + batches) * batch_size)]  # (item, augmentation seed)
    loader = DataLoader(SeededItems(dataset), batch_size=batch_size, sampler=keys, num_workers=workers,
                        persistent_workers=True, worker_init_fn=init_worker)
    batches_seen = iter(loader)
    for _ in range(warmup):
        next(batches_seen)
    start = time.perf_counter()
    for _ in range(batches):
        next(batches_seen)
    return batches * batch_size / (time.perf_counter() - start)


def measure_workers(store: str, videos: int, frames: int, crop_size: int, img_size: int, clip_len: int,
                    workers: tuple[int, ...], batch_size: int = BATCH, batches: int = 16) -> dict[str, float]:
    """``{workers: clips/s}`` of a training ``DataLoader`` (uint8 clips, augmentation on) over a synthetic store."""
    with tempfile.TemporaryDirectory(prefix=f"loader-bench-workers-{store}-") as tmp:
        root = Path(tmp)
        write_synthetic_extraction(root, videos, frames, crop_size, store)
        found, _ = scan_extraction(root, clip_len, 1, img_size)
        dataset = FaceClipDataset(found, img_size, clip_len, train=True, uint8=True)
        return {str(w): round(_workers_rate(dataset, w, batch_size, batches), 1) for w in workers}


def measure_image_workers(transforms: tuple[str, ...] = TRAIN_TRANSFORMS, images: int = 64, batches: int = 24,
                          repeats: int = 3) -> dict[str, float]:
    """``{transform: images/s}`` one training ``DataLoader`` worker delivers for the image experiments: ``images``
    real-photo crops (RGB, :data:`IMAGE_SIZE`²) as :class:`ImageSubset` items under
    :func:`~deepfake_ssat.data.images.make_train_transform`, loaded as the trainer loads them; best of ``repeats``."""
    photo, side = astronaut(), 4 * IMAGE_SIZE  # [512, 512, 3]; crops of side² resized to IMAGE_SIZE²
    rng = np.random.default_rng(0)
    base = []  # (PIL image, label), as a torchvision dataset gives them
    for n in range(images):
        y, x = rng.integers(0, photo.shape[0] - side, 2)
        crop = cv2.resize(photo[y:y + side, x:x + side], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
        base.append((Image.fromarray(crop), n % 10))
    labels, classes = [label for _, label in base], [str(c) for c in range(10)]
    subsets = {kind: ImageSubset("synthetic", base, list(range(images)), labels, classes,
                                 make_train_transform(kind, IMAGE_SIZE, 3), "RGB") for kind in transforms}
    return {kind: round(max(_workers_rate(subset, 1, IMAGE_BATCH, batches) for _ in range(repeats)), 1)
            for kind, subset in subsets.items()}


def measure_format(store: str, videos: int, frames: int, crop_size: int, img_size: int, clip_len: int, clips: int,
                   repeats: int) -> dict[str, Any]:
    """P5 and store size for one format; decode and loader passes interleaved, best of ``repeats`` each."""
    with tempfile.TemporaryDirectory(prefix=f"loader-bench-{store}-") as tmp:
        root = Path(tmp)
        write_synthetic_extraction(root, videos, frames, crop_size, store)
        size = sum(p.stat().st_size for p in root.glob("dfdc/*/*/*")) // videos
        found, _ = scan_extraction(root, clip_len, 1, img_size)
        passes = {"decode": _decode_rate(found, clip_len, clips),
                  "train": _load_rate(FaceClipDataset(found, img_size, clip_len, train=True), clips),
                  "train_uint8": _load_rate(FaceClipDataset(found, img_size, clip_len, train=True, uint8=True), clips),
                  "eval": _load_rate(FaceClipDataset(found, img_size, clip_len, train=False, eval_clips=2), clips)}
        passes["decode"]()  # warm the page cache
        best = {name: 0.0 for name in passes}
        for _ in range(repeats):
            for name, run in passes.items():
                best[name] = max(best[name], run())
    return {"bytes_per_video": size, "decode_frames_per_s": round(best["decode"], 1),
            "loader_frames_per_s": round(best["train"], 1), "eval_loader_frames_per_s": round(best["eval"], 1),
            "loader_over_decode": round(best["train"] / best["decode"], 3),
            "eval_loader_over_decode": round(best["eval"] / best["decode"], 3),
            "clips_per_s_per_worker": round(best["train"] / clip_len, 2),
            "uint8_loader_frames_per_s": round(best["train_uint8"], 1),
            "uint8_loader_over_decode": round(best["train_uint8"] / best["decode"], 3),
            "uint8_clips_per_s_per_worker": round(best["train_uint8"] / clip_len, 2)}


def run_loader_benchmark(videos: int = 8, frames: int = 32, crop_size: int = 224, img_size: int = 224,
                         clip_len: int = 16, formats: tuple[str, ...] = FORMATS, clips: int = 64, repeats: int = 3,
                         workers: tuple[int, ...] | None = None, image_batches: int = 24,
                         command: str | None = None) -> dict[str, Any]:
    """Measure P5 for each store format in ``formats`` on temporary synthetic extractions; the JSON-ready result.

    ``met``: P5 >= 0.5 for the default format (None when it is not measured), for the worker's job under
    ``data.loader.transfer`` uint8 (the CUDA default: the clip is normalised on the GPU) and, separately, float (``met_float``:
    the worker normalises too, as on CPUs). ``dataloader_clips_per_s``: ``{workers: clips/s}`` of a training
    DataLoader over the default format, for each count in ``workers`` (default 1 .. the CPU count; () skips it).
    ``image_items_per_s_per_worker``: :func:`measure_image_workers` over ``image_batches`` batches (0 skips it).
    """
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    retained = tune_malloc()["tuned"]  # this process plays one loader worker: init_worker's allocator setting
    results = {store: measure_format(store, videos, frames, crop_size, img_size, clip_len, clips, repeats)
               for store in formats}
    default = results.get(DEFAULT_FORMAT)
    workers = tuple(range(1, (os.cpu_count() or 1) + 1)) if workers is None else workers
    loaders = None if default is None or not workers else \
        measure_workers(DEFAULT_FORMAT, videos, frames, crop_size, img_size, clip_len, workers)
    images = measure_image_workers(batches=image_batches, repeats=repeats) if image_batches else None
    return {
        **run_header("loader", command),
        "setup": {"videos": videos, "crops_per_video": frames, "crop_size": crop_size, "img_size": img_size,
                  "clip_len": clip_len, "augment": True, "clips_per_pass": clips, "repeats": repeats, "threads": 1,
                  "worker_retains_freed_memory": retained},
        "formats": results, "default_format": DEFAULT_FORMAT,
        "dataloader_clips_per_s": loaders, "dataloader_batch_size": BATCH,
        "image_items_per_s_per_worker": images,
        "image_setup": {"img_size": IMAGE_SIZE, "batch_size": IMAGE_BATCH, "workers": 1},
        "goal": {"loader_over_decode": f">= {GOAL} for the default format"},
        "met": None if default is None else default["uint8_loader_over_decode"] >= GOAL,
        "met_float": None if default is None else default["loader_over_decode"] >= GOAL,
    }


def format_loader(result: dict[str, Any]) -> str:
    """One-line text summary of :func:`run_loader_benchmark`."""
    setup, loaders = result["setup"], result["dataloader_clips_per_s"]
    text = f"P5 loader/decode (goal >= {GOAL} for {result['default_format']}), {setup['clip_len']}x" \
           f"{setup['img_size']}^2 augmented clips: " + "; ".join(
               f"{store} {r['uint8_loader_over_decode']:.2f} uint8 / {r['loader_over_decode']:.2f} float "
               f"({r['uint8_clips_per_s_per_worker']:.1f} / {r['clips_per_s_per_worker']:.1f} clips/s per worker, "
               f"decode {r['decode_frames_per_s']:.0f} frames/s, {r['bytes_per_video'] / 1e6:.2f} MB/video)"
               for store, r in result["formats"].items())
    if loaders:
        text += "; DataLoader " + ", ".join(f"{w} workers {rate:.0f}" for w, rate in loaders.items()) + " clips/s"
    if result["image_items_per_s_per_worker"]:
        text += f"; {IMAGE_SIZE}^2 images, 1 worker: " + ", ".join(
            f"{kind} {rate:.0f}" for kind, rate in result["image_items_per_s_per_worker"].items()) + " images/s"
    return text
