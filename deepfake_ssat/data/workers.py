"""Process memory and threads of the loaders: :func:`tune_malloc` and ``DataLoader(worker_init_fn=init_worker)``.

A face-clip item passes through several multi-megabyte arrays (decoded crops, the resized crop, each
augmentation's output: 2.4 MB each at 16 x 224^2), and a CPU train step through larger activations. glibc serves
blocks that large from fresh ``mmap`` pages and returns them on free, so every item (every step) faults its memory in
again: ~1,100-1,700 page faults, about 1-1.5 ms of a ~10 ms clip. :func:`tune_malloc` keeps that memory in the
process. The CLIs call it in the main process; :func:`init_worker` calls it in each loader worker too (a worker
started by ``fork`` inherits the setting, one started by ``spawn`` / ``forkserver`` -- Python 3.14's default -- does
not).
"""
from __future__ import annotations

import sys
from typing import Any


def tune_malloc(mmap_threshold: int = 32 * 2 ** 20) -> dict[str, Any]:
    """Keep freed activation memory in the process (glibc): fixed mmap threshold, no heap trimming.

    By default glibc returns large freed blocks to the OS and the next step faults them in again
    (zeroed pages: kernel time). ``mallopt(M_MMAP_THRESHOLD, 32 MiB)`` + ``mallopt(M_TRIM_THRESHOLD,
    max)`` keeps them. Process-wide and irreversible. Returns what was set, or why nothing was.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return {"tuned": False, "why": "glibc mallopt unavailable on this platform"}
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = (libc.mallopt(m_mmap_threshold, ctypes.c_int(mmap_threshold)) == 1
              and libc.mallopt(m_trim_threshold, ctypes.c_int(2 ** 31 - 1)) == 1)
    except (OSError, AttributeError) as e:
        return {"tuned": False, "why": f"mallopt failed: {e}"}
    if not ok:
        return {"tuned": False, "why": "mallopt returned an error"}
    return {"tuned": True, "M_MMAP_THRESHOLD": mmap_threshold, "M_TRIM_THRESHOLD": 2 ** 31 - 1}


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of the training and evaluation loaders: :func:`tune_malloc`.

    OpenCV's thread count is deliberately left alone: ``cv2.setNumThreads`` in a worker forked from a process whose
    OpenCV thread pool has run deadlocks (tested).
    """
    tune_malloc()
