"""Face extraction safety (issue 3 follow-up): output keys never leave --out, one-line usage errors, Ctrl-C,
reruns that notice a replaced video, an index that survives concurrent shards, umask permissions.

Real faces (skimage astronaut) in tiny OpenCV-written videos, one sampled frame each, 32 px crops."""
import json
import os
import shutil
import stat
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from deepfake_ssat.faces import extract as extract_mod
from deepfake_ssat.commands.extract_faces import main as extract_main
from deepfake_ssat.faces.inputs import VideoItem, discover, shard
from deepfake_ssat.faces.extract import ExtractionParams, OutsideOutputError, run_batch, write_index
from deepfake_ssat.faces.sampling import SamplingPolicy
from deepfake_ssat.synthetic.scenes import FacePath, write_face_video

PARAMS = ExtractionParams(SamplingPolicy(frames=1), min_face_size=20, crop_size=32)
CLI = ["--frames", "1", "--size", "32", "--min-face", "20", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A 128x96, 3-frame video with one real face (~26x33 px) that MTCNN finds."""
    path = tmp_path_factory.mktemp("tiny") / "face.mp4"
    write_face_video(path, 128, 96, 3, [FacePath(20, 0, 0.3)])
    return path


def _listing(root: Path, skip: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` except ``skip`` and what is below it: type, size, mtime (ns)."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in dirs + files:
            st = os.lstat(Path(folder, name))
            entries[os.path.relpath(Path(folder, name), root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
    return entries


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``extract_main(argv)``'s exit code (returned or via SystemExit), stdout and stderr."""
    try:
        code = extract_main(argv)
    except SystemExit as e:
        code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_line(text: str) -> str:
    assert text.strip() and "\n" not in text.strip() and "Traceback" not in text, text
    return text.strip()


def _manifests(out: Path) -> dict[str, dict]:
    return {p.parent.relative_to(out).as_posix(): json.loads(p.read_text()) for p in out.rglob("manifest.json")}


def _temp_folders(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------- A: nothing outside --out

@pytest.mark.parametrize("form, keys", [
    (".", {"cwd/v"}),
    ("./", {"cwd/v"}),
    ("..", {"top/x", "top/cwd/v"}),
    ("../x.mp4", {"top/x"}),
    ("{tmp}/abs/dir/../y.mp4", {"abs/y"}),
])
def test_relative_and_dotted_inputs_stay_inside_out(tiny, tmp_path, monkeypatch, capsys, form, keys):
    (tmp_path / "top/cwd").mkdir(parents=True)
    (tmp_path / "abs/dir").mkdir(parents=True)
    for rel in ("top/x.mp4", "top/cwd/v.mp4", "abs/y.mp4"):
        shutil.copy(tiny, tmp_path / rel)
    monkeypatch.chdir(tmp_path / "top/cwd")
    form, out = form.format(tmp=tmp_path), tmp_path / "out"
    assert {item.rel_dir for item in discover([form])} == keys  # checked before anything is written
    before = _listing(tmp_path, out)
    code, _, err = _run([form, "--out", str(out), *CLI], capsys)
    assert code == 0, err
    assert _listing(tmp_path, out) == before
    manifests = _manifests(out)
    assert set(manifests) == keys and all(m["key"] == k and m["crops"] for k, m in manifests.items())
    assert not _temp_folders(out)


NAMES = ["-first.mp4", "..mp4", "...mp4", ".hidden.mp4", "new\nline.mp4", "zz.mp4"]
DFDC_NAMES = ["-first.mp4", "..mp4", "...mp4", "zz.mp4"]
PART = "dfdc_train_part_5"
NAME_KEYS = {f"clips/{k}" for k in ("-first", "_.", "_..", "_.hidden", "new_line", "zz")} | \
            {f"dfdc/{PART}/{k}" for k in ("-first", "_.", "_..", "zz")}


@pytest.fixture(scope="module")
def names_run(tiny, tmp_path_factory):
    """One extraction (umask 022) of a plain folder and a DFDC part whose videos have unsafe names."""
    root = tmp_path_factory.mktemp("names")
    (root / "clips").mkdir()
    (root / PART).mkdir()
    for name in NAMES:
        shutil.copy(tiny, root / "clips" / name)
    for name in DFDC_NAMES:
        shutil.copy(tiny, root / PART / name)
    (root / PART / "metadata.json").write_text(json.dumps({n: {"label": "REAL"} for n in DFDC_NAMES}))
    inputs, out = [str(root / "clips"), str(root / PART)], root / "out"
    assert {item.rel_dir for item in discover(inputs)} == NAME_KEYS  # checked before anything is written
    before = _listing(root, out)
    mask = os.umask(0o022)
    try:
        code = extract_main([*inputs, "--out", str(out), *CLI])
    finally:
        os.umask(mask)
    return SimpleNamespace(root=root, out=out, inputs=inputs, code=code, before=before,
                           after=_listing(root, out))


def test_unsafe_video_names_get_safe_keys_and_every_video_survives(names_run):
    assert names_run.code == 0
    assert names_run.after == names_run.before
    manifests = _manifests(names_run.out)
    assert set(manifests) == NAME_KEYS
    for key, m in manifests.items():
        assert m["key"] == key and m["status"] == "ok" and len(m["crops"]) == 1
        assert m["container"] == "crops.tar" and (names_run.out / key / "crops.tar").is_file()
    sources = {Path(m["source"]["path"]).name for k, m in manifests.items() if k.startswith("clips/")}
    assert sources == set(NAMES)
    summary = json.loads((names_run.out / "summary.json").read_text())
    assert {v["key"] for v in summary["videos"]} == NAME_KEYS and summary["counts"] == {"ok": len(NAME_KEYS)}
    assert not _temp_folders(names_run.out)
    rows = (names_run.out / "index.jsonl").read_text().splitlines()
    assert {json.loads(r)["dir"] for r in rows} == NAME_KEYS


def test_output_permissions_follow_the_umask(names_run):
    for path in names_run.out.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o755 if path.is_dir() else 0o644), path
    assert stat.S_IMODE(names_run.out.stat().st_mode) == 0o755


def test_rerun_skips_unsafe_names_and_keeps_their_crops(names_run, capsys):
    crops = {p: p.stat().st_mtime_ns for p in names_run.out.rglob("crops.tar")}
    code, out, _ = _run([*names_run.inputs, "--out", str(names_run.out), *CLI], capsys)
    assert code == 0 and json.loads(out)["skipped"] == len(NAME_KEYS)
    assert len(crops) == len(NAME_KEYS)
    assert {p: p.stat().st_mtime_ns for p in names_run.out.rglob("crops.tar")} == crops


def test_key_mapping_collisions_and_ordinary_names(tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    long_stem = "L" * 240
    for name in (".x.mp4", "_.x.mp4", "a.mp4", "a.avi", "a-2.mp4", "b\\c.mp4", "000_003.mp4", f"{long_stem}.mp4"):
        (folder / name).write_bytes(b"")
    (folder / os.fsdecode(b"\xff.mp4")).write_bytes(b"")
    ffpp = tmp_path / "ff/manipulated_sequences/Deepfakes/c23/videos"
    ffpp.mkdir(parents=True)
    (ffpp / "..mp4").write_bytes(b"")
    (ffpp / "000_003.mp4").write_bytes(b"")
    items = discover([folder, tmp_path / "ff"])
    by_source = {it.path.name: it for it in items}
    assert {name: it.rel_dir for name, it in by_source.items() if name != f"{long_stem}.mp4"} == {
        ".x.mp4": "f/_.x", "_.x.mp4": "f/_.x-2", "a-2.mp4": "f/a-2", "a.avi": "f/a", "a.mp4": "f/a-3",
        "b\\c.mp4": "f/b_c", "000_003.mp4": "ffpp/Deepfakes/c23/000_003", os.fsdecode(b"\xff.mp4"): "f/_",
        "..mp4": "ffpp/Deepfakes/c23/_."}
    assert by_source["a.mp4"].video_id == "a-3" and by_source[".x.mp4"].video_id == ".x"
    long_key = by_source[f"{long_stem}.mp4"].rel_dir.split("/")[1]
    assert len(long_key) <= 200 and long_key.endswith(f"-{zlib.crc32(long_stem.encode()):08x}")
    assert len({it.rel_dir for it in items}) == len(items) and not any(it.problem for it in items)
    assert sum(len(shard(items, i, 3)) for i in range(3)) == len(items)
    again = discover([folder, folder / "a.mp4"])  # the same folder via two inputs: still a duplicate
    assert again[-1].problem[0] == "duplicate" and again[-1].rel_dir == "f/a"


def test_a_key_leading_outside_out_is_an_error_not_a_write(tiny, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (elsewhere / "v").mkdir(parents=True)
    (elsewhere / "v/keep.txt").write_text("keep")
    out.mkdir()
    (out / "linked").symlink_to(elsewhere)
    keys = ["../escape/v", str(tmp_path / "abs_target"), ".", "a/..", "linked/v"]
    items = [VideoItem(tiny, key, "x", "v") for key in keys]
    before = _listing(tmp_path, out)
    summary = run_batch(items, out, PARAMS, progress=False)
    assert _listing(tmp_path, out) == before
    for record in summary["videos"]:
        assert record["status"] == "error" and "not inside the output folder" in record["reason"], record
        assert "\n" not in record["reason"]
    (out / "tmp-in").mkdir()
    with pytest.raises(OutsideOutputError):
        extract_mod._publish(out / "tmp-in", elsewhere / "v", out)
    assert (elsewhere / "v/keep.txt").read_text() == "keep" and (out / "tmp-in").is_dir()


def test_stale_temp_cleanup_touches_only_its_own_video(tmp_path):
    out = tmp_path / "out"
    clips = out / "clips"
    others = [clips / ".x.tmp-abc.tmp-k2j4h6g8", clips / ".a.tmp-q1w2e3r4", clips / "x.tmp-abc"]
    for folder in [clips / ".x.tmp-dead", *others]:  # a video named x.tmp-abc.mp4 and its temp folder
        folder.mkdir(parents=True)
    for name in ("x", "[a]", "*"):  # glob characters in a video name match nothing else
        extract_mod._remove_stale(clips / name, out)
    assert not (clips / ".x.tmp-dead").exists() and all(p.is_dir() for p in others)


# ---------------------------------------------------------------- B: one-line usage errors, Ctrl-C

@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_a_one_line_error(tiny, tmp_path, monkeypatch, capsys, device):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = _run([str(tiny), "--out", str(tmp_path / "out"), *CLI, "--device", device], capsys)
    assert code == 2 and _one_line(err).startswith(f"error: --device {device}:")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["file.txt", "file.txt/sub"])
def test_out_that_cannot_be_a_folder_is_a_one_line_error(tiny, tmp_path, capsys, where):
    (tmp_path / "file.txt").write_text("mine")
    code, _, err = _run([str(tiny), "--out", str(tmp_path / where), *CLI], capsys)
    assert code == 2 and _one_line(err).startswith(f"error: --out {tmp_path / where}")
    assert (tmp_path / "file.txt").read_text() == "mine"


@pytest.mark.parametrize("flags, flag", [
    (["--frames", "0"], "--frames"), (["--frames", "-2"], "--frames"), (["--clips", "0"], "--clips"),
    (["--clips", "1", "--clip-len", "0"], "--clip-len"), (["--clips", "1", "--stride", "0"], "--stride"),
    (["--size", "0"], "--size"), (["--min-face", "0"], "--min-face"), (["--crop-scale", "0"], "--crop-scale"),
])
def test_zero_or_negative_values_name_the_flag(tmp_path, capsys, flags, flag):
    (tmp_path / "in").mkdir()
    argv = [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--allow-empty", "--no-progress", *flags]
    code, _, err = _run(argv, capsys)
    line = _one_line(err)  # flags checked by argparse's type (--crop-scale) read "error: argument --crop-scale: ..."
    assert code == 2 and (line.startswith(f"error: {flag} ") or line.startswith(f"error: argument {flag}: "))
    assert not (tmp_path / "out").exists()


def test_input_without_videos_fails_unless_allowed(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("no videos here")
    for folder in ("empty", "notes"):
        code, _, err = _run([str(tmp_path / folder), "--out", str(tmp_path / "out"), *CLI], capsys)
        assert code == 2 and f"{tmp_path / folder}: no videos found" in _one_line(err) and "--allow-empty" in err
        assert not (tmp_path / "out").exists()
    code, out, _ = _run([str(tmp_path / "empty"), "--out", str(tmp_path / "out"), *CLI, "--allow-empty"], capsys)
    assert code == 0 and json.loads(out)["videos"] == 0
    assert json.loads((tmp_path / "out/summary.json").read_text())["num_videos"] == 0


def test_broken_symlink_is_recorded_as_missing(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "in/gone.mp4").symlink_to(tmp_path / "deleted.mp4")
    code, _, err = _run([str(tmp_path / "in"), "--out", str(tmp_path / "out"), *CLI], capsys)
    assert code == 0, err
    [record] = json.loads((tmp_path / "out/summary.json").read_text())["videos"]
    assert record["key"] == "in/gone" and record["status"] == "missing" and not record["skipped"]
    assert "broken symbolic link" in record["reason"] and "deleted.mp4" in record["reason"]


def test_ctrl_c_keeps_finished_videos_and_says_how_to_continue(tiny, tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(tiny, tmp_path / "in" / name)
    out = tmp_path / "out"
    argv = [str(tmp_path / "in"), "--out", str(out), *CLI]
    real, calls = extract_mod._write_crops, []

    def interrupted_second(*args, **kwargs):
        crops = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # the second video's crops are in its temp folder: Ctrl-C now
            raise KeyboardInterrupt
        return crops

    monkeypatch.setattr(extract_mod, "_write_crops", interrupted_second)
    code, _, err = _run(argv, capsys)
    monkeypatch.undo()
    line = _one_line(err)
    assert code == 130 and line.startswith("interrupted: 1 video(s) finished in this run are complete")
    assert line.endswith("continue with: dfssat-extract-faces " + " ".join(argv))
    assert set(_manifests(out)) == {"in/a"} and len(_manifests(out)["in/a"]["crops"]) == 1
    assert not (out / "in/b").exists() and not _temp_folders(out) and not (out / "summary.json").exists()
    code, printed, _ = _run(argv, capsys)
    assert code == 0 and json.loads(printed)["skipped"] == 1 and set(_manifests(out)) == {"in/a", "in/b"}


# ---------------------------------------------------------------- C: reruns, index

def test_rerun_redoes_a_replaced_video_of_the_same_size(tiny, tmp_path, monkeypatch):
    video = tmp_path / "in/v.mp4"
    video.parent.mkdir()
    shutil.copy(tiny, video)
    items, out = discover([tmp_path / "in"]), tmp_path / "out"
    assert run_batch(items, out, PARAMS, progress=False)["videos"][0]["status"] == "ok"
    with monkeypatch.context() as m:  # size and mtime unchanged: done without reading the video
        m.setattr(extract_mod, "sha256_file", lambda path: pytest.fail("hashed an unchanged video"))
        assert run_batch(items, out, PARAMS, progress=False)["videos"][0]["skipped"]
    stamp = video.stat().st_mtime_ns + 5_000_000_000
    os.utime(video, ns=(stamp, stamp))  # touch: same content, so still done, and the new mtime is stored
    assert run_batch(items, out, PARAMS, progress=False)["videos"][0]["skipped"]
    assert json.loads((out / "in/v/manifest.json").read_text())["source"]["mtime_ns"] == stamp
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    video.write_bytes(bytes(data))  # another video of the very same size
    assert video.stat().st_size == len(data)
    assert not run_batch(items, out, PARAMS, progress=False)["videos"][0]["skipped"]


class _Entries:
    """What ``os.scandir`` returns, from a list already read."""

    def __init__(self, entries: list) -> None:
        self._entries = iter(entries)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._entries)

    def close(self) -> None:
        pass


def test_index_survives_folders_vanishing_under_it(tmp_path, monkeypatch):
    out = tmp_path / "out"
    manifest = {"tool": "deepfake_ssat.faces", "status": "no_face", "crops": []}
    for rel in ("clips/a", "clips/b", "clips/c", "clips/.a.tmp-k3j5h2x1/old"):
        (out / rel).mkdir(parents=True)
        (out / rel / "manifest.json").write_text(json.dumps(manifest))
    real = os.scandir

    def scandir(path="."):
        if Path(path) == out / "clips/b":  # renamed away by another shard between listing and reading
            raise FileNotFoundError(2, "No such file or directory", str(path))
        if Path(path) == out / "clips/c":  # listed, then its manifest is replaced away
            with real(path) as it:
                entries = list(it)
            (out / "clips/c/manifest.json").unlink()
            return _Entries(entries)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    assert write_index(out) == 1
    monkeypatch.undo()
    assert [json.loads(r)["dir"] for r in (out / "index.jsonl").read_text().splitlines()] == ["clips/a"]
