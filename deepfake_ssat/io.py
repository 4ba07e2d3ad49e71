"""File-system utilities every layer may use: atomic writes, temp folders, strict JSON, digests, git revision;
:func:`paused_gc` for reading a large store's records; and :func:`first_line`, how the library quotes an error
inside its own one-line messages.

Nothing here imports torch or any other part of the package, so face extraction, evaluation and the
trainer can all write their outputs the same way: temp file in the target folder, fsync, rename;
permissions follow the umask (0644 / 0755 by default), never ``mkstemp``'s private 0600.
"""
from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

_UMASK_LOCK = threading.Lock()


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of ``error``'s message, cut to ``limit`` characters; its type name when it has none."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` via a temp file in the same folder + fsync + rename: never half-written.

    The file gets ``0666 & ~umask`` permissions, as ``open()`` would have given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda f: f.write(text), mode="w")


def strict_json_value(obj: Any) -> Any:
    """``obj`` with every NaN / inf float replaced by None (JSON has no such numbers)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json_value(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json_value(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that never writes ``NaN`` / ``Infinity`` tokens (they become null)."""
    return json.dumps(strict_json_value(obj), allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, dumps_strict(obj, indent=2) + "\n")


def make_temp_dir(parent: Path, prefix: str) -> Path:
    """A fresh hidden folder in ``parent`` with ``0777 & ~umask`` permissions (``mkdtemp`` gives 0700)."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def is_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies strictly below ``root`` once both are resolved (symlinks, ``..``)."""
    path, root = Path(path).resolve(), Path(root).resolve()
    return path != root and root in path.parents


def find_files(root: Path, name: str) -> list[Path]:
    """Every file called ``name`` below ``root``, sorted, skipping hidden folders (``.<name>.tmp-*``:
    work in progress) and folders that vanish while the walk runs (another process publishing)."""
    def vanished(error: OSError) -> None:
        if not isinstance(error, (FileNotFoundError, NotADirectoryError)):
            raise error

    found = []
    for folder, dirs, files in os.walk(root, onerror=vanished):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if name in files:
            found.append(Path(folder) / name)
    return sorted(found)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_revision() -> str | None:
    """The package checkout's commit (with ``-dirty`` if modified), or None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if rev.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a block (or, as ``@paused_gc()``, a function) runs, then
    restored as it was.

    For bulk reads that make millions of small containers (dicts, lists, tuples) in no reference cycle, such as a
    face store's index rows and the videos built from them: every so many new objects the collector walks all the
    older ones again, which was 40 % of building DFDC-scale datasets (``build_face_clips`` on 120,000 videos: 17.7 s,
    10.9 s paused) and half of walking 10,000 manifests.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
