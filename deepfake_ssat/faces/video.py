"""Video decoding behind one small interface: decord (the default) or PyAV (FFmpeg wheels for x86, ARM, macOS).

:func:`open_video` gives a :class:`VideoSource`: ``len`` (frames), ``fps``, ``read(indices)`` -> (H, W, 3) uint8
RGB frames, ``close``. Frame ``i`` is the ``i``-th in presentation order, the same frame with either backend
(decord alone errs after seeks in MPEG-4 Part 2 with B-frames); a bad video is a :class:`VideoFailure`.
"""
from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..io import first_line

BACKENDS = ("decord", "pyav")
_PACKAGES = {"decord": "decord", "pyav": "av"}
PYAV_MIN = (14, 1)


class VideoFailure(Exception):
    """A video that cannot be extracted: ``status`` (e.g. ``unreadable``) and a one-line ``reason``."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class BackendUnavailable(RuntimeError):
    """The package a video backend needs is missing or too old (one line: what to ``pip install``)."""


class VideoSource:
    """One open video: ``len(source)`` frames at ``source.fps``; :meth:`read` decodes frames by index.

    Use it as a context manager (or call :meth:`close`) to release the file.
    """

    path: Path
    fps: float

    def __len__(self) -> int:
        raise NotImplementedError

    def read(self, indices: list[int]) -> list[np.ndarray]:
        """Frames ``indices`` (strictly increasing, in ``[0, len)``) as C-contiguous (H, W, 3) uint8 RGB arrays.

        Raises :class:`VideoFailure` (``unreadable``) when a frame cannot be decoded, ValueError for bad indices.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the file; the source cannot be read afterwards."""

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_video(path: Path | str, backend: str = "decord") -> VideoSource:
    """A :class:`VideoSource` on ``path`` with at least one frame, or :class:`VideoFailure`.

    ``backend``: one of :data:`BACKENDS` (ValueError otherwise); :class:`BackendUnavailable` when its
    package is not installed. Statuses: ``missing`` (no such file), ``unreadable`` (empty, cannot be
    opened, no video stream, no frames).
    """
    module = require_backend(backend)
    path = Path(path)
    if not path.is_file():
        raise VideoFailure("missing", f"{path}: file not found")
    if path.stat().st_size == 0:
        raise VideoFailure("unreadable", f"{path}: empty file (0 bytes)")
    source = _DecordSource(path, module) if backend == "decord" else _PyAVSource(path, module)
    if len(source) == 0:
        source.close()
        raise VideoFailure("unreadable", f"{path}: no frames")
    return source


def require_backend(backend: str) -> Any:
    """The backend's module (decord / av), imported now: ValueError for a name not in :data:`BACKENDS`,
    :class:`BackendUnavailable` when its package is missing or too old. Commands call it before any work."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    package = _PACKAGES[backend]
    try:
        module = __import__(package)
    except ImportError as e:
        hint = "; on ARM or macOS use the pyav backend" if backend == "decord" else ""
        raise BackendUnavailable(f"video backend {backend!r} needs the {package} package ({first_line(e)}): "
                                 f"pip install {package}{hint}") from None
    if backend == "pyav" and _version(module) < PYAV_MIN:  # VideoFrame.rotation came in 14.1
        raise BackendUnavailable(f"video backend 'pyav' needs av >= {'.'.join(map(str, PYAV_MIN))}, found "
                                 f"{module.__version__}: pip install -U av")
    return module


def _version(module: Any) -> tuple[int, ...]:
    return tuple(int(part) for part in module.__version__.split(".")[:2] if part.isdigit())


def _check_indices(indices: list[int], count: int) -> None:
    if any(b <= a for a, b in zip(indices, indices[1:])) or (indices and not 0 <= indices[0] <= indices[-1] < count):
        raise ValueError(f"frame indices must be strictly increasing and in [0, {count}), got {_short(indices)}")


def _short(indices: list[int]) -> str:
    return str(indices) if len(indices) <= 8 else f"[{', '.join(map(str, indices[:8]))}, ...] ({len(indices)})"


def _should_seek(i: int, pos: int | None, keys: list[int]) -> int | None:
    """The key frame to seek to before decoding frame ``i`` from position ``pos`` (next frame the decoder
    gives; None: unknown), or None to decode forward: backwards, or when the seek saves over half the gap."""
    at = bisect.bisect_right(keys, i) - 1
    key = keys[at] if at >= 0 else 0
    if pos is None or i < pos or (key > pos and i - key < (i - pos) / 2):
        return key
    return None


# ------------------------------------------------------------------------------------------------ decord


class _DecordSource(VideoSource):
    """decord's ``VideoReader`` read forward: gaps skipped with ``skip_frames`` (no colour conversion),
    a key-frame seek only when it saves more than half of the gap (``get_batch`` seeks for every gap)."""

    def __init__(self, path: Path, decord: Any) -> None:
        self.path = path
        try:
            self._reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
        except Exception as e:  # decord raises DECORDError / RuntimeError with multi-line C++ messages
            raise VideoFailure("unreadable", f"{path}: decord cannot open it ({first_line(e)})") from None
        self.fps = float(self._reader.get_avg_fps())
        self._count = len(self._reader)
        self._keys = sorted(int(k) for k in self._reader.get_key_indices()) or [0]
        self._pos = 0

    def __len__(self) -> int:
        return self._count

    def read(self, indices: list[int]) -> list[np.ndarray]:
        _check_indices(indices, self._count)
        frames = []
        for i in indices:
            try:
                if _should_seek(i, self._pos, self._keys) is not None:
                    self._reader.seek_accurate(i)
                elif i > self._pos:
                    self._reader.skip_frames(i - self._pos)
                frames.append(_unpad_rows(self._reader.next().asnumpy()))
            except Exception as e:
                raise VideoFailure("unreadable", f"{self.path}: decoding frame {i} failed ({first_line(e)})") from None
            self._pos = i + 1
        return frames

    def close(self) -> None:
        self._reader = None


def _unpad_rows(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB from a decord frame. decord 0.6 hands narrow frames (e.g. 24x14) over as (H, W, 4):
    each row is W x 3 RGB bytes plus padding; drop the padding."""
    if frame.ndim == 3 and frame.shape[2] != 3:
        height, width = frame.shape[:2]
        frame = frame.reshape(height, -1)[:, :width * 3].reshape(height, width, 3)
    return np.ascontiguousarray(frame)


# -------------------------------------------------------------------------------------------------- PyAV


class _PyAVSource(VideoSource):
    """PyAV (FFmpeg) with decord's frame numbering: one demux pass at open lists the video packets; frame
    ``i`` is the packet with the ``i``-th smallest pts (decord's ``len`` too). Decoded frames are numbered by
    their pts, so a seek (to the key frame at or before the target) never shifts an index."""

    _frames: Iterator[Any]  # the frames being decoded
    _pos: int | None  # index of the next frame _frames gives; None: not known yet (after a seek)

    def __init__(self, path: Path, av: Any) -> None:
        self.path, self._av = path, av
        self._container = self._open()
        stream = self._container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        self.fps = float(rate) if rate else 0.0
        pts, self._keys = self._index_packets()
        self._count = len(pts)
        self._pts = pts if None not in pts else []  # no timestamps: frames are counted, never seeked to
        self._number = {t: i for i, t in enumerate(self._pts)}
        self._restart()

    def _open(self) -> Any:
        try:
            container = self._av.open(str(self.path), **_metadata_options(self._av))
        except Exception as e:  # av.error.InvalidDataError etc., one line
            raise VideoFailure("unreadable", f"{self.path}: PyAV cannot open it ({first_line(e)})") from None
        if not container.streams.video:
            container.close()
            raise VideoFailure("unreadable", f"{self.path}: PyAV cannot open it (no video stream)")
        container.streams.video[0].thread_type = "AUTO"  # frame + slice threads: same frames, same order
        return container

    def _index_packets(self) -> tuple[list[int | None], list[int]]:
        """(pts of every video packet, sorted; all None when some packet has none), (indices of the key frames)."""
        found = []
        try:
            for packet in self._container.demux(self._container.streams.video[0]):
                if packet.size:  # the empty packet at the end only flushes the decoder
                    found.append((packet.pts, bool(packet.is_keyframe)))
        except Exception as e:
            self._container.close()
            raise VideoFailure("unreadable", f"{self.path}: PyAV cannot open it ({first_line(e)})") from None
        if any(pts is None for pts, _ in found):  # e.g. raw AVI with B-frames: frames are counted, never seeked to
            return [None] * len(found), [0]
        found.sort(key=lambda p: p[0])
        return [pts for pts, _ in found], [i for i, (_, key) in enumerate(found) if key] or [0]

    def __len__(self) -> int:
        return self._count

    def read(self, indices: list[int]) -> list[np.ndarray]:
        _check_indices(indices, self._count)
        return [self._frame(i) for i in indices]

    def close(self) -> None:
        self._frames = iter(())
        self._container.close()

    def _frame(self, i: int) -> np.ndarray:
        """Frame ``i`` as RGB: seek when :func:`_should_seek` says so, then decode forward to it."""
        key = _should_seek(i, self._pos, self._keys if self._pts else [0])
        if key == 0 and self._pos != 0:
            self._restart()
        elif key:
            self._seek(key)
        frame = self._decode_to(i)
        if frame is None and key:  # the seek landed past frame i: decode from the start instead
            self._restart()
            frame = self._decode_to(i)
        if frame is None:
            ended = self._pos is not None and self._pos <= i
            why = f"the decoder ended after {self._pos} of {self._count} frames" if ended else "no frame decoded for it"
            raise VideoFailure("unreadable", f"{self.path}: decoding frame {i} failed ({why})")
        return _rgb(frame)

    def _restart(self) -> None:
        """Decode from the first frame, on a freshly opened file (exact for any format, seekable or not)."""
        self._container.close()
        self._container = self._open()
        self._frames = self._container.decode(self._container.streams.video[0])
        self._pos = 0

    def _seek(self, key: int) -> None:
        """Position the demuxer at (or before) key frame ``key`` and flush the decoder."""
        stream = self._container.streams.video[0]
        try:
            self._container.seek(self._pts[key], stream=stream, backward=True)
        except Exception as e:
            raise VideoFailure("unreadable", f"{self.path}: seeking to frame {key} failed ({first_line(e)})") from None
        self._frames, self._pos = self._container.decode(stream), None

    def _decode_to(self, i: int) -> Any:
        """Decode forward to frame ``i``; the frame, or None when the decoder gives a later frame first or ends."""
        try:
            for frame in self._frames:
                number = self._number.get(frame.pts, self._pos) if self._pts else self._pos
                if number is None:
                    raise VideoFailure("unreadable", f"{self.path}: decoding frame {i} failed "
                                                     f"(a decoded frame has pts {frame.pts}, not in the stream)")
                self._pos = number + 1
                if number >= i:
                    return frame if number == i else None
        except self._av.error.FFmpegError as e:
            raise VideoFailure("unreadable", f"{self.path}: decoding frame {i} failed ({first_line(e)})") from None
        return None


def _metadata_options(av: Any) -> dict[str, str]:
    """Tags that are not UTF-8 must not make a file unreadable: av < 19 needs ``metadata_errors`` for that
    (19 dropped the argument and always decodes them losslessly)."""
    return {"metadata_errors": "ignore"} if _version(av) < (19,) else {}


def _rgb(frame: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB, C-contiguous, turned upright as the file's display matrix says (decord does too)."""
    array = frame.to_ndarray(format="rgb24")
    turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(array, turns) if turns else array)
