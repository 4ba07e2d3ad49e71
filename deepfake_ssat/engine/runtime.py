"""Process-level runtime settings for CPU training (applied by the CLIs, not by library calls)."""
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
