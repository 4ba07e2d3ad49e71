"""Loader worker process set-up: ``DataLoader(..., worker_init_fn=init_worker)``.

A face-clip item passes through several multi-megabyte arrays (decoded crops, the resized crop, each
augmentation's output: 2.4 MB each at 16 x 224^2). glibc serves blocks that large from fresh ``mmap`` pages and
returns them on free, so every item faults in its memory again: ~1,100 page faults, about 1.5 ms of a ~10 ms clip.
Raising glibc's mmap and trim thresholds in the worker keeps that memory in the worker's heap, reused item after
item. Only the loader workers are changed, never the training process. Each worker also runs OpenCV on one thread:
with 8 workers on a 16-core node, OpenCV's own thread pools would otherwise oversubscribe the cores.
"""
from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h> mallopt parameters


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """glibc: allocate blocks below ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` bytes of
    freed heap for reuse (process-wide). True when both are set; False where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                     trim_threshold))


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training and evaluation loaders: :func:`retain_freed_memory`, and OpenCV on one
    thread (the workers are the parallelism; torch already runs single-threaded there)."""
    import cv2

    cv2.setNumThreads(1)
    retain_freed_memory()
