"""Both video backends (decord, PyAV) read the same, exact frames from real videos: OpenCV-written mp4v .mp4
and MJPG .avi, PyAV-written H.264 .mp4 with B-frames and VP9 .webm (no frame count in its header).

Every frame carries its own index in six black/white 16x16 blocks (robust to compression), a pure red patch
bottom-left and a pure blue one bottom-right (an RGB/BGR swap shows), and a green block that moves.
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from deepfake_ssat.faces.video import (BACKENDS, BackendUnavailable, VideoFailure, VideoSource, open_video,
                                       require_backend)

pytest.importorskip("av")
W, H, N, BITS = 96, 64, 48, 6
CODECS = {"mp4": "mp4v", "avi": "MJPG"}  # OpenCV: mp4v has a key frame every 12 frames; in MJPG every frame is one
ENCODED = {"h264": ("mp4", "libx264", {"g": "12", "bf": "3", "crf": "18"}),  # PyAV; B-frames: decode order differs
           "webm": ("webm", "libvpx-vp9", {"g": "12", "crf": "20", "b": "0"})}
VIDEOS = (*CODECS, *ENCODED)
PATTERNS = {
    "all": list(range(N)),
    "every_third": list(range(0, N, 3)),
    "sparse_seeks": [0, 1, 30, 45],
    "first_last": [0, N - 1],
    "single_late": [40],
    "around_keys": [11, 12, 13, 35, 36, 37],
}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    pytest.importorskip({"decord": "decord", "pyav": "av"}[request.param])
    return request.param


def painted(i: int, width: int = W, height: int = H) -> np.ndarray:
    """The RGB frame ``i`` of the test videos."""
    frame = np.full((height, width, 3), 128, np.uint8)
    for bit in range(BITS):
        frame[:16, 16 * bit:16 * bit + 16] = 255 if (i >> bit) & 1 else 0
    x = 16 + (i * 4) % (width - 48)
    frame[24:40, x:x + 16] = (0, 200, 0)
    frame[height - 16:, :16] = (255, 0, 0)
    frame[height - 16:, width - 16:] = (0, 0, 255)
    return frame


def decoded_index(frame: np.ndarray) -> int:
    return sum(1 << bit for bit in range(BITS) if frame[4:12, 16 * bit + 4:16 * bit + 12].mean() > 128)


def assert_rgb(frame: np.ndarray) -> None:
    red, blue = frame[-12:-4, 4:12].mean(axis=(0, 1)), frame[-12:-4, -12:-4].mean(axis=(0, 1))
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60, (red, blue)


def write_av(path: Path, codec: str, options: dict[str, str], rotation: int = 0) -> Path:
    """``path`` with the N test frames, encoded by PyAV; ``rotation``: display matrix, degrees counter-clockwise."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25, options=options)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(N):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(painted(i), format="rgb24")))
        container.mux(stream.encode())
    return path


def write_video(path: Path, fourcc: str, count: int = N, width: int = W, height: int = H) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25, (width, height))
    assert writer.isOpened(), path
    for i in range(count):
        writer.write(cv2.cvtColor(painted(i, width, height), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    made = {ext: write_video(folder / f"clip.{ext}", fourcc) for ext, fourcc in CODECS.items()}
    made.update({name: write_av(folder / f"{name}.{ext}", codec, options)
                 for name, (ext, codec, options) in ENCODED.items()})
    made["narrow"] = write_video(folder / "narrow.mp4", "mp4v", count=6, width=24, height=14)
    return made


def stream_facts(path: Path) -> tuple[list[int], bool, int]:
    """(key frame positions in file order, whether any packet comes before one it is shown after, the header's
    frame count)."""
    import av

    with av.open(str(path)) as container:
        found = [p for p in container.demux(video=0) if p.size]
        pts = [p.pts for p in found]
        return [i for i, p in enumerate(found) if p.is_keyframe], pts != sorted(pts), container.streams.video[0].frames


def test_the_test_videos_cover_sparse_key_frames_reordering_and_no_frame_count(videos):
    keys, reordered, count = stream_facts(videos["mp4"])
    assert keys[:4] == [0, 12, 24, 36] and len(keys) < N // 2 and not reordered and count == N
    assert stream_facts(videos["avi"]) == (list(range(N)), False, N)
    keys, reordered, _ = stream_facts(videos["h264"])
    assert keys == [0, 12, 24, 36] and reordered
    assert stream_facts(videos["webm"])[2] == 0  # counted from the packets instead


@pytest.mark.parametrize("ext", VIDEOS)
def test_length_and_fps(videos, backend, ext):
    with open_video(videos[ext], backend) as source:
        assert isinstance(source, VideoSource) and len(source) == N and source.fps == pytest.approx(25.0)


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("ext", VIDEOS)
def test_read_gives_exactly_the_frames_asked_in_rgb(videos, backend, ext, pattern):
    indices = PATTERNS[pattern]
    with open_video(videos[ext], backend) as source:
        frames = source.read(indices)
    assert [decoded_index(f) for f in frames] == indices
    for frame in frames:
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
        assert_rgb(frame)


@pytest.mark.parametrize("ext", VIDEOS)
def test_reads_go_back_and_forth_on_one_source(videos, backend, ext):
    with open_video(videos[ext], backend) as source:
        for indices in ([40], [5, 6], [47], [0], [13, 25, 26], [24]):
            assert [decoded_index(f) for f in source.read(indices)] == indices
        assert source.read([]) == []


@pytest.mark.parametrize("ext", VIDEOS)
def test_both_backends_decode_the_same_pixels(videos, ext):
    pytest.importorskip("decord")
    indices = [0, 7, 12, 30, 47]
    with open_video(videos[ext], "decord") as first, open_video(videos[ext], "pyav") as second:
        decord_frames, pyav_frames = (np.stack(s.read(indices)).astype(int) for s in (first, second))
    assert np.abs(decord_frames - pyav_frames).mean() < 1.0
    truth = np.stack([painted(i) for i in indices]).astype(int)
    assert np.abs(pyav_frames - truth).mean() < 6


def test_a_narrow_video_reads_unpadded(videos, backend):
    with open_video(videos["narrow"], backend) as source:
        frames = source.read([0, 5])
    assert len(source) == 6 and all(f.shape == (14, 24, 3) and f.flags.c_contiguous for f in frames)
    assert np.abs(frames[0].astype(int) - painted(0, 24, 14)).mean() < 12


def test_a_rotated_video_comes_out_upright_as_decord_gives_it(tmp_path, backend):
    import av

    if not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
        pytest.skip(f"writing a rotated video needs av >= 18, found {av.__version__}")
    path = write_av(tmp_path / "rotated.mp4", "mpeg4", {"qscale": "3"}, rotation=90)
    with open_video(path, backend) as source:
        frame = source.read([3])[0]
    assert frame.shape == (W, H, 3) and frame.flags.c_contiguous
    assert np.abs(frame.astype(int) - np.rot90(painted(3))).mean() < 6
    red = (frame[..., 0] > 200) & (frame[..., 2] < 60)
    assert red[-12:-4, -12:-4].all() and not red[-12:-4, 4:12].any()  # a quarter turn: bottom-left to bottom-right


def test_pyav_is_exact_where_decord_is_not_mpeg4_with_b_frames(tmp_path):
    """decord lists key frames in decode order and lands off by one or two frames after a seek here."""
    path = write_av(tmp_path / "mpeg4_b.mp4", "mpeg4", {"g": "12", "bf": "2", "qscale": "3"})
    assert stream_facts(path)[1]
    with open_video(path, "pyav") as source:
        for indices in PATTERNS.values():
            assert [decoded_index(f) for f in source.read(indices)] == indices


def packets(path: Path) -> list[tuple[int, int]]:
    """(byte offset, size) of each video packet of ``path``."""
    import av

    with av.open(str(path)) as container:
        return [(p.pos, p.size) for p in container.demux(video=0) if p.size]


@pytest.mark.parametrize("ext", CODECS)
def test_frames_past_corrupt_packets_fail_with_one_line(tmp_path, backend, ext):
    path = write_video(tmp_path / f"corrupt.{ext}", CODECS[ext])
    data = bytearray(path.read_bytes())
    for pos, size in packets(path)[40:]:
        data[pos:pos + size] = b"Z" * size
    path.write_bytes(bytes(data))
    with open_video(path, backend) as source:
        assert len(source) == N
        with pytest.raises(VideoFailure) as failure:
            source.read([N - 1])
    assert failure.value.status == "unreadable" and f"decoding frame {N - 1} failed" in failure.value.reason
    assert "\n" not in failure.value.reason
    if backend == "pyav":  # decord's decoder thread runs ahead: frames before the damage may fail there too
        with open_video(path, backend) as source:
            assert [decoded_index(f) for f in source.read([0, 20, 37, 39])] == [0, 20, 37, 39]


def test_pyav_fails_for_frames_the_decoder_never_gives(tmp_path):
    """Packets 40.. hold MPEG-4 "not coded" frames, so decoding ends early. decord counts decoded frames and
    silently hands over earlier ones for 40..47; PyAV numbers frames by pts and says which one is missing."""
    path = write_video(tmp_path / "not_coded.mp4", "mp4v")
    data = bytearray(path.read_bytes())
    for pos, size in packets(path)[40:]:
        header = data.index(b"\x00\x00\x01\xb6", pos) + 4  # VOP start code, then the bits: type 2, seconds 1,
        data[header + 1] &= ~(1 << 5)  # marker 1, time increment 5 (25 fps), marker 1, then bit 10: vop_coded = 0
    path.write_bytes(bytes(data))
    with open_video(path, "pyav") as source:
        assert len(source) == N and decoded_index(source.read([39])[0]) == 39
        for i in (40, 41):
            with pytest.raises(VideoFailure, match=f"decoding frame {i} failed"):
                source.read([i])
        with pytest.raises(VideoFailure, match="decoding frame 40 failed"):
            source.read(list(range(30, N)))


@pytest.mark.parametrize("name, content, status, words", [
    ("absent.mp4", None, "missing", "file not found"),
    ("empty.mp4", b"", "unreadable", "empty file (0 bytes)"),
    ("garbage.mp4", bytes(range(256)) * 40, "unreadable", "cannot open it"),
    ("notes.mp4", b"not a video, just notes\n" * 10, "unreadable", "cannot open it"),
    ("truncated.mp4", "half", "unreadable", "cannot open it"),
])
def test_bad_files_fail_with_a_status_and_one_line(tmp_path, videos, backend, name, content, status, words):
    path = tmp_path / name
    if content == "half":
        data = videos["mp4"].read_bytes()
        path.write_bytes(data[:len(data) // 2])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoFailure) as failure:
        open_video(path, backend)
    assert failure.value.status == status and words in failure.value.reason
    assert str(path) in failure.value.reason and "\n" not in failure.value.reason


def test_bad_indices_and_unknown_backends_are_value_errors(videos, backend):
    with open_video(videos["mp4"], backend) as source:
        for bad in ([N], [-1], [3, 2], [4, 4]):
            with pytest.raises(ValueError, match="strictly increasing"):
                source.read(bad)
    for call in (lambda: open_video(videos["mp4"], "opencv"), lambda: require_backend("opencv")):
        with pytest.raises(ValueError, match="decord, pyav") as error:
            call()
        assert "\n" not in str(error.value)


def test_a_backend_without_its_package_says_what_to_install(monkeypatch, videos, backend):
    package = {"decord": "decord", "pyav": "av"}[backend]
    monkeypatch.setitem(sys.modules, package, None)  # import now raises ImportError
    for call in (lambda: open_video(videos["mp4"], backend), lambda: require_backend(backend)):
        with pytest.raises(BackendUnavailable, match=f"pip install {package}") as error:
            call()
        assert "\n" not in str(error.value)


def test_pyav_older_than_14_1_is_refused_with_one_line(monkeypatch, videos):
    import av

    monkeypatch.setattr(av, "__version__", "13.1.0")
    with pytest.raises(BackendUnavailable, match=r"needs av >= 14\.1, found 13\.1\.0: pip install -U av"):
        open_video(videos["mp4"], "pyav")


def test_importing_the_module_loads_neither_torch_nor_a_backend():
    import subprocess

    code = ("import sys, deepfake_ssat.faces.video\n"
            "print([m for m in ('torch', 'timm', 'decord', 'av') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
