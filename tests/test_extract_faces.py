"""Face extraction (issue 3): real faces (skimage astronaut) in OpenCV-written videos at known positions."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import ROOT, run_env
from skimage import data

from deepfake_ssat.faces import extract as extract_mod
from deepfake_ssat.commands.extract_faces import main as extract_main
from deepfake_ssat.faces.inputs import InputError, discover, file_item, shard
from deepfake_ssat.faces.detect import FrameFaces, box_iou, link_tracks, main_track, square_crop_box
from deepfake_ssat.faces.extract import ExtractionParams, extract_video, run_batch
from deepfake_ssat.faces.sampling import SamplingPolicy, clip_indices, uniform_indices
from deepfake_ssat.synthetic.scenes import FacePath, render_frame, write_face_video

FRAMES = 8
PARAMS = ExtractionParams(SamplingPolicy(frames=FRAMES), min_face_size=20, store="png")  # crops read as files
MOVING = FacePath(10, 5, 0.5, 80, 40, 0.6)           # 320x240, 20 frames
BIG, SMALL = FacePath(-40, -10, 0.6), FacePath(230, 60, 0.4)  # 400x240 two faces
GRAY = FacePath(20, 10, 0.6)                         # 320x240 grayscale
PORTRAIT = FacePath(100, 700, 1.6)                   # 1080x1920


def _write_inputs(folder: Path) -> None:
    folder.mkdir(parents=True)
    write_face_video(folder / "moving.mp4", 320, 240, 20, [MOVING])
    write_face_video(folder / "two_faces.mp4", 400, 240, 12, [BIG, SMALL])
    write_face_video(folder / "noface.mp4", 240, 180, 8, background=data.coffee())
    write_face_video(folder / "tiny.mp4", 25, 14, 5, [FacePath(0, 0, 0.05)])
    write_face_video(folder / "gray.mp4", 320, 240, 8, [GRAY], gray=True)
    write_face_video(folder / "portrait.mp4", 1080, 1920, 3, [PORTRAIT])
    write_face_video(folder / "short.mp4", 320, 240, 5, [MOVING])
    (folder / "empty.mp4").write_bytes(b"")
    whole = (folder / "moving.mp4").read_bytes()
    (folder / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (folder / "notes.mp4").write_text("these are my notes, not a video\n")
    (folder / "readme.txt").write_text("not a video suffix: ignored by folder discovery\n")


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One extraction over a folder holding every kind of video: (input dir, output dir, summary)."""
    root = tmp_path_factory.mktemp("faces")
    _write_inputs(root / "clips")
    summary = run_batch(discover([root / "clips"]), root / "out", PARAMS, progress=False)
    return root / "clips", root / "out", summary


def _record(summary: dict, name: str) -> dict:
    return next(v for v in summary["videos"] if v["key"] == f"clips/{name}")


def _manifest(out: Path, name: str) -> dict:
    return json.loads((out / "clips" / name / "manifest.json").read_text())


def _read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# ---------------------------------------------------------------- sampling, tracks, crop geometry

def test_uniform_and_clip_sampling():
    assert uniform_indices(300, 32) == np.linspace(0, 299, 32).round().astype(int).tolist()
    assert uniform_indices(5, 32) == [0, 1, 2, 3, 4]
    assert uniform_indices(0, 32) == []
    clips = clip_indices(100, clips=3, clip_len=16, stride=2)
    assert [c[0] for c in clips] == [0, 34, 69] and all(np.diff(c).tolist() == [2] * 15 for c in clips)
    assert clips[-1][-1] == 99
    assert clip_indices(10, clips=2, clip_len=16, stride=2) == [[0, 2, 4, 6, 8]]
    policy = SamplingPolicy(clips=2, clip_len=4, stride=3)
    assert policy.indices(30) == sorted(set(sum(policy.clip_lists(30), [])))
    assert policy.requested() == 8
    with pytest.raises(ValueError):
        SamplingPolicy(frames=0)


def _faces(*boxes) -> FrameFaces:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return FrameFaces(b, np.ones(len(b), np.float32), np.zeros((len(b), 5, 2), np.float32))


def test_tracks_follow_faces_and_pick_most_persistent():
    big, small, blip = [0, 0, 100, 100], [300, 300, 340, 340], [600, 0, 700, 100]
    frames = [_faces(small, big), _faces([10, 5, 110, 105], small), _faces(small), _faces([20, 10, 120, 110], blip)]
    tracks = link_tracks(frames)
    assert sorted(len(t.members) for t in tracks) == [1, 3, 3]
    best = main_track(tracks, frames)
    assert best.members == {0: 1, 1: 0, 3: 0}  # ties on length go to the larger face
    assert box_iou(np.array(big), np.array([[0, 0, 100, 100], [50, 0, 150, 100], [200, 200, 300, 300]])).round(3).tolist() \
        == [[1.0, 0.333, 0.0]]


def test_square_crop_box_is_square_scaled_and_clamped():
    assert square_crop_box(np.array([100, 100, 200, 180]), 1.3, 640, 480) == (85, 75, 215, 205)
    x1, y1, x2, y2 = square_crop_box(np.array([0, 0, 50, 100]), 1.3, 640, 480)
    assert (x1, y1) == (0, 0) and x2 - x1 == y2 - y1 == 130
    assert square_crop_box(np.array([0, 0, 400, 400]), 1.3, 640, 300) == (50, 0, 350, 300)


# ---------------------------------------------------------------- real videos

def test_moving_face_crops_boxes_and_manifest(batch):
    clips, out, summary = batch
    assert _record(summary, "moving") == {"key": "clips/moving", "source": str(clips / "moving.mp4"),
                                          "status": "ok", "reason": None, "num_crops": FRAMES, "skipped": False,
                                          "face_share": 1.0, "redone": False}
    m = _manifest(out, "moving")
    sampled = uniform_indices(20, FRAMES)
    assert m["sampled"] == sampled and [c["frame"] for c in m["crops"]] == sampled
    assert m["frames_without_face"] == [] and m["frames_requested"] == FRAMES
    source = clips / "moving.mp4"
    assert m["source"] == {"path": str(source.resolve()), "size": source.stat().st_size,
                           "mtime_ns": source.stat().st_mtime_ns,
                           "sha256": hashlib.sha256(source.read_bytes()).hexdigest()}
    assert m["key"] == "clips/moving"
    assert (m["fps"], m["num_frames"], m["width"], m["height"]) == (25.0, 20, 320, 240)
    assert (m["dataset"], m["video_id"], m["label"], m["status"]) == ("clips", "moving", None, "ok")
    assert m["params"] == PARAMS.to_dict() and m["version"]
    for crop in m["crops"]:
        expected = MOVING.face_box(crop["frame"] / 19)
        assert box_iou(np.array(crop["box"]), expected)[0, 0] > 0.75, (crop, expected)
        assert crop["file"] == f"{crop['frame']:06d}.png" and 0.85 < crop["score"] <= 1
        assert np.array(crop["landmarks"]).shape == (5, 2)
        x1, y1, x2, y2 = crop["crop_box"]
        assert x2 - x1 == y2 - y1
        assert _read_rgb(out / "clips/moving" / crop["file"]).shape == (224, 224, 3)
    assert sorted(p.name for p in (out / "clips/moving").iterdir()) == sorted(
        [c["file"] for c in m["crops"]] + ["manifest.json"])


def test_crops_are_rgb_not_bgr(batch):
    _, out, _ = batch
    crop = _manifest(out, "moving")["crops"][3]
    saved = _read_rgb(out / "clips/moving" / crop["file"]).astype(float)
    x1, y1, x2, y2 = crop["crop_box"]
    truth = render_frame(320, 240, [MOVING], crop["frame"] / 19)[y1:y2, x1:x2]
    truth = cv2.resize(truth, (224, 224), interpolation=cv2.INTER_LINEAR).astype(float)
    right, swapped = np.abs(saved - truth).mean(), np.abs(saved[..., ::-1] - truth).mean()
    assert right < 12 and swapped > right + 10, (right, swapped)
    assert saved[..., 0].mean() > saved[..., 2].mean() + 15  # skin: more red than blue


def test_two_faces_keeps_the_largest_track(batch):
    _, out, summary = batch
    m = _manifest(out, "two_faces")
    assert _record(summary, "two_faces")["status"] == "ok" and m["num_tracks"] >= 2
    assert len(m["kept_tracks"]) == 1 and len(m["crops"]) == FRAMES
    for crop in m["crops"]:
        assert box_iou(np.array(crop["box"]), BIG.face_box(0))[0, 0] > 0.75


def test_two_faces_keep_all_tracks(batch, tmp_path):
    clips, _, _ = batch
    params = ExtractionParams(SamplingPolicy(frames=3), min_face_size=20, keep="all", store="png")
    record = extract_video(file_item(clips / "two_faces.mp4"), tmp_path, params, params.detector("cpu"))
    m = json.loads((tmp_path / "clips/two_faces/manifest.json").read_text())
    assert record["num_crops"] == 6 and len(m["kept_tracks"]) == 2
    for face in (BIG, SMALL):
        hits = [c for c in m["crops"] if box_iou(np.array(c["box"]), face.face_box(0))[0, 0] > 0.7]
        assert len(hits) == 3 and len({c["track"] for c in hits}) == 1
        assert all((tmp_path / "clips/two_faces" / c["file"]).is_file() and "_t" in c["file"] for c in hits)


@pytest.mark.parametrize("name, status, words", [
    ("empty", "unreadable", "empty file (0 bytes)"),
    ("truncated", "unreadable", "decord cannot open it"),
    ("notes", "unreadable", "decord cannot open it"),
    ("tiny", "no_face", "no face found in 5 sampled frames"),
    ("noface", "no_face", "no face found in 8 sampled frames"),
])
def test_bad_videos_are_recorded_with_one_line_reasons(batch, name, status, words):
    clips, out, summary = batch
    record = _record(summary, name)
    assert record["status"] == status and words in record["reason"] and "\n" not in record["reason"]
    assert record["num_crops"] == 0
    if status == "unreadable":
        assert str(clips / f"{name}.mp4") in record["reason"]
        assert not (out / "clips" / name).exists()
    else:  # finished: a manifest with no crops, so that a rerun skips it
        assert _manifest(out, name)["crops"] == []


def test_summary_counts_and_index(batch):
    _, out, summary = batch
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["counts"] == {"ok": 5, "no_face": 2, "unreadable": 3} == summary["counts"]
    assert on_disk["num_videos"] == 10 and on_disk["skipped"] == 0
    assert "clips/readme" not in {v["key"] for v in on_disk["videos"]}
    rows = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted(r["dir"] for r in rows) == sorted(f"clips/{n}" for n in
                                                    ("moving", "two_faces", "gray", "portrait", "short", "tiny", "noface"))
    moving = next(r for r in rows if r["dir"] == "clips/moving")
    assert moving["frames"] == uniform_indices(20, FRAMES) and moving["status"] == "ok"
    assert not list(out.rglob(".*.tmp-*"))


def test_grayscale_video_gives_gray_rgb_crops(batch):
    _, out, summary = batch
    m = _manifest(out, "gray")
    assert _record(summary, "gray")["status"] == "ok" and len(m["crops"]) == FRAMES
    assert box_iou(np.array(m["crops"][0]["box"]), GRAY.face_box(0))[0, 0] > 0.75
    image = _read_rgb(out / "clips/gray" / m["crops"][0]["file"]).astype(int)
    assert np.abs(image[..., 0] - image[..., 2]).max() <= 4


def test_portrait_1080x1920(batch):
    _, out, _ = batch
    m = _manifest(out, "portrait")
    assert (m["width"], m["height"]) == (1080, 1920) and len(m["crops"]) == 3
    for crop in m["crops"]:
        assert box_iou(np.array(crop["box"]), PORTRAIT.face_box(0))[0, 0] > 0.8


def test_short_video_uses_what_exists_and_says_so(batch):
    _, out, summary = batch
    record, m = _record(summary, "short"), _manifest(out, "short")
    assert record["status"] == "ok" and record["reason"] == "video has 5 frames: 5 sampled of 8 asked"
    assert m["sampled"] == [0, 1, 2, 3, 4] and m["frames_requested"] == 8 and len(m["crops"]) == 5


def test_clip_sampling_policy(batch, tmp_path):
    clips, _, _ = batch
    params = ExtractionParams(SamplingPolicy(clips=2, clip_len=3, stride=2), min_face_size=20)
    extract_video(file_item(clips / "moving.mp4"), tmp_path, params, params.detector("cpu"))
    m = json.loads((tmp_path / "clips/moving/manifest.json").read_text())
    assert m["clips"] == [[0, 2, 4], [15, 17, 19]] and m["sampled"] == [0, 2, 4, 15, 17, 19]
    assert [c["frame"] for c in m["crops"]] == m["sampled"]


# ---------------------------------------------------------------- resume, kill, shards

def test_rerun_skips_and_changed_parameters_redo(batch, tmp_path):
    clips, _, _ = batch
    items = discover([clips / "moving.mp4", clips / "noface.mp4", clips / "empty.mp4"])
    first = run_batch(items, tmp_path, PARAMS, progress=False)
    crop = tmp_path / "clips/moving/000000.png"
    stamp = crop.stat().st_mtime_ns
    again = run_batch(items, tmp_path, PARAMS, progress=False)
    assert [v["skipped"] for v in again["videos"]] == [False, True, True]  # empty (unreadable) is retried
    assert [v["status"] for v in again["videos"]] == [v["status"] for v in first["videos"]]
    assert crop.stat().st_mtime_ns == stamp
    small = ExtractionParams(SamplingPolicy(frames=4), min_face_size=20, crop_size=96, store="png")
    redo = run_batch(items, tmp_path, small, progress=False)
    assert not any(v["skipped"] for v in redo["videos"])
    files = sorted(p.name for p in (tmp_path / "clips/moving").iterdir())
    assert files == ["000000.png", "000006.png", "000013.png", "000019.png", "manifest.json"]
    assert _read_rgb(tmp_path / "clips/moving/000006.png").shape == (96, 96, 3)


def test_interrupted_video_leaves_nothing_that_looks_done(batch, tmp_path, monkeypatch):
    clips, _, _ = batch
    items = discover([clips / "moving.mp4"])
    real_imwrite, calls = cv2.imwrite, []

    def dying_imwrite(path, image):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_imwrite(path, image)

    monkeypatch.setattr(extract_mod.cv2, "imwrite", dying_imwrite)
    with pytest.raises(KeyboardInterrupt):
        run_batch(items, tmp_path, PARAMS, progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "clips/moving").exists() and not list(tmp_path.rglob(".*.tmp-*"))
    # what SIGKILL leaves: a stale temp folder and a published folder whose manifest was never written
    stale = tmp_path / "clips/.moving.tmp-dead"
    stale.mkdir(parents=True)
    (stale / "000000.png").write_bytes(b"half")
    (tmp_path / "clips/moving").mkdir()
    (tmp_path / "clips/moving/000000.png").write_bytes(b"half")
    summary = run_batch(items, tmp_path, PARAMS, progress=False)
    assert summary["videos"][0]["status"] == "ok" and not summary["videos"][0]["skipped"]
    assert not stale.exists() and _read_rgb(tmp_path / "clips/moving/000000.png").shape == (224, 224, 3)


def test_shards_partition_the_input_exactly(tmp_path):
    for i in range(23):
        (tmp_path / "in" / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / f"d{i % 3}" / f"v{i}.mp4").write_bytes(b"")
    items = discover([tmp_path / "in"])
    keys = {it.rel_dir for it in items}
    assert len(keys) == 23
    for n in (1, 2, 3, 7):
        parts = [{it.rel_dir for it in shard(items, i, n)} for i in range(n)]
        assert sum(len(p) for p in parts) == 23 and set().union(*parts) == keys
    assert extract_main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--shard", "1",
                         "--num-shards", "2", "--no-progress"]) == 0
    extract_main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--shard", "0", "--num-shards", "2",
                  "--no-progress"])
    done = [json.loads((tmp_path / "out" / f"summary.shard-{i}-of-2.json").read_text()) for i in (0, 1)]
    seen = [{v["key"] for v in s["videos"]} for s in done]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == keys
    assert all(v["status"] == "unreadable" for s in done for v in s["videos"])


@pytest.mark.slow
def test_sigkilled_cli_run_resumes(batch, tmp_path):
    clips, _, _ = batch
    src = tmp_path / "in"
    src.mkdir()
    for i in range(4):
        shutil.copy(clips / "moving.mp4", src / f"v{i}.mp4")
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "tools/extract_faces.py"), str(src), "--out", str(out),
           "--frames", "8", "--min-face", "20", "--no-progress", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=run_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not list(out.rglob("manifest.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name for p in out.rglob("manifest.json")}
    assert finished and not (out / "summary.json").exists()
    result = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 4}
    assert {v["key"].split("/")[-1] for v in summary["videos"] if v["skipped"]} >= finished
    assert not list(out.rglob(".*.tmp-*")) and len((out / "index.jsonl").read_text().splitlines()) == 4


@pytest.mark.slow
def test_workers_give_the_same_crops(batch, tmp_path):
    clips, _, _ = batch
    items = discover([clips / "moving.mp4", clips / "two_faces.mp4", clips / "notes.mp4"])
    serial = run_batch(items, tmp_path / "one", PARAMS, progress=False)
    parallel = run_batch(items, tmp_path / "two", PARAMS, workers=2, progress=False)
    assert parallel["videos"] == serial["videos"]
    for name in ("moving", "two_faces"):
        a = json.loads((tmp_path / "one/clips" / name / "manifest.json").read_text())["crops"]
        b = json.loads((tmp_path / "two/clips" / name / "manifest.json").read_text())["crops"]
        assert a == b


# ---------------------------------------------------------------- datasets and the CLI

def _dfdc_part(root: Path, moving: Path) -> Path:
    part = root / "dfdc_train_part_7"
    part.mkdir(parents=True)
    for name in ("aaa", "bbb", "ccc", "ddd"):
        shutil.copy(moving, part / f"{name}.mp4")
    (part / "metadata.json").write_text(json.dumps({
        "aaa.mp4": {"label": "FAKE", "split": "train", "original": "bbb.mp4"},
        "bbb.mp4": {"label": "REAL", "split": "train", "original": None},
        "ddd.mp4": {"label": "MAYBE", "split": "train", "original": None},
        "eee.mp4": {"label": "FAKE", "split": "train", "original": "bbb.mp4"},
    }))
    return part


def test_dfdc_part_labels_and_metadata_problems(batch, tmp_path):
    clips, _, _ = batch
    part = _dfdc_part(tmp_path / "dfdc", clips / "moving.mp4")
    params = ExtractionParams(SamplingPolicy(frames=2), min_face_size=20)
    summary = run_batch(discover([tmp_path / "dfdc"]), tmp_path / "out", params, progress=False)  # DFDC root
    by_key = {v["key"]: v for v in summary["videos"]}
    assert set(by_key) == {f"dfdc/{part.name}/{n}" for n in ("aaa", "bbb", "ccc", "ddd", "eee")}
    assert by_key[f"dfdc/{part.name}/aaa"]["status"] == by_key[f"dfdc/{part.name}/bbb"]["status"] == "ok"
    ccc, ddd, eee = (by_key[f"dfdc/{part.name}/{n}"] for n in ("ccc", "ddd", "eee"))
    assert ccc["status"] == "bad_metadata" and "not listed in metadata.json" in ccc["reason"]
    assert ddd["status"] == "bad_metadata" and "unknown label 'MAYBE'" in ddd["reason"]
    assert eee["status"] == "missing" and "file is missing" in eee["reason"]
    rows = {r["video_id"]: r for r in map(json.loads, (tmp_path / "out/index.jsonl").read_text().splitlines())}
    assert set(rows) == {"aaa", "bbb"}
    assert (rows["aaa"]["label"], rows["aaa"]["original"], rows["aaa"]["part"]) == (1, "bbb.mp4", part.name)
    assert (rows["bbb"]["label"], rows["bbb"]["dataset"]) == (0, "dfdc")
    assert discover([part]) == discover([tmp_path / "dfdc"])  # a part on its own


def test_dfdc_unreadable_metadata_is_recorded(tmp_path):
    part = tmp_path / "dfdc_train_part_0"
    part.mkdir()
    (part / "x.mp4").write_bytes(b"")
    (part / "metadata.json").write_text("{not json")
    [item] = discover([part])
    assert item.problem[0] == "bad_metadata" and "metadata.json: unreadable" in item.problem[1]


def test_ffpp_layout_identity(tmp_path):
    layout = {"original_sequences/youtube/c23/videos/000.mp4": ("original", 0),
              "original_sequences/youtube/raw/videos/000.mp4": ("original", 0),
              "manipulated_sequences/Deepfakes/c23/videos/000_003.mp4": ("Deepfakes", 1),
              "manipulated_sequences/Face2Face/c23/videos/000_003.mp4": ("Face2Face", 1),
              "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4": None,
              "original_sequences/actors/c40/videos/01__talking.mp4": ("actors", 0)}
    for rel in layout:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    items = {it.rel_dir: it for it in discover([tmp_path])}
    assert set(items) == {"ffpp/original/c23/000", "ffpp/original/raw/000", "ffpp/Deepfakes/c23/000_003",
                          "ffpp/Face2Face/c23/000_003", "ffpp/actors/c40/01__talking"}
    df = items["ffpp/Deepfakes/c23/000_003"]
    assert (df.dataset, df.method, df.compression, df.video_id, df.label) == ("ffpp", "Deepfakes", "c23", "000_003", 1)
    assert items["ffpp/original/c23/000"].label == 0


def test_missing_input_and_usage_errors(tmp_path, capsys):
    with pytest.raises(InputError, match="no such file or folder"):
        discover([tmp_path / "nope"])
    assert extract_main([str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope: no such file or folder" in err and not (tmp_path / "out").exists()
    for bad in (["--shard", "2", "--num-shards", "2"], ["--workers", "0"], ["--stride", "3"],
                ["--frames", "4", "--clips", "2"], ["--thresholds", "0.9,0.9"]):
        with pytest.raises(SystemExit) as e:
            extract_main([str(tmp_path), "--out", str(tmp_path / "out"), *bad])
        assert e.value.code == 2


def test_duplicate_output_folder_is_recorded(batch, tmp_path):
    clips, _, _ = batch
    (tmp_path / "clips").mkdir()
    shutil.copy(clips / "empty.mp4", tmp_path / "clips" / "empty.mp4")
    first, second = discover([clips / "empty.mp4", tmp_path / "clips" / "empty.mp4"])
    assert first.problem is None and second.problem[0] == "duplicate"


def test_cli_on_one_file_exits_0_and_writes_summary(batch, tmp_path, capsys):
    clips, _, _ = batch
    rc = extract_main([str(clips / "moving.mp4"), str(clips / "notes.mp4"), "--out", str(tmp_path),
                       "--frames", "3", "--min-face", "20", "--size", "64", "--format", "jpg",
                       "--device", "cpu", "--no-progress"])
    assert rc == 0
    line = json.loads(capsys.readouterr().out)
    assert line["counts"] == {"ok": 1, "unreadable": 1} and line["crops"] == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["params"]["crop_size"] == 64 and summary["params"]["image_format"] == "jpg"
    assert _read_rgb(tmp_path / "clips/moving/000019.jpg").shape == (64, 64, 3)


def test_tracks_bridge_far_apart_samples_but_not_other_people():
    a0, a1 = [0, 0, 40, 50], [30, 10, 72, 62]          # same face, 0.7 sides further: IoU 0.1
    b = [200, 0, 240, 50]                              # someone else, 5 sides away
    tracks = link_tracks([_faces(a0, b), _faces(b, a1)])
    assert [t.members for t in tracks] == [{0: 0, 1: 1}, {0: 1, 1: 0}]
    assert len(link_tracks([_faces(a0), _faces([0, 0, 200, 250])])) == 2  # 5x larger: not the same face


def test_pyav_backend_gives_the_same_crops_and_counts_as_done(batch, tmp_path, capsys):
    """--backend pyav decodes the same frames as decord: same boxes and crops, the same statuses for broken files,
    and a decord extraction is finished work for a pyav rerun (the decoder is not an extraction parameter)."""
    clips, _, _ = batch
    items = discover([clips / "moving.mp4", clips / "two_faces.mp4", clips / "notes.mp4", clips / "empty.mp4"])
    decord = run_batch(items, tmp_path / "decord", PARAMS, progress=False)
    pyav = run_batch(items, tmp_path / "pyav", replace(PARAMS, video_backend="pyav"), progress=False)
    assert [(v["key"], v["status"], v["num_crops"]) for v in pyav["videos"]] == \
        [(v["key"], v["status"], v["num_crops"]) for v in decord["videos"]]
    for name in ("moving", "two_faces"):
        a = json.loads((tmp_path / "decord/clips" / name / "manifest.json").read_text())
        b = json.loads((tmp_path / "pyav/clips" / name / "manifest.json").read_text())
        assert (a["decoder"], b["decoder"]) == ("decord", "pyav") and a["num_frames"] == b["num_frames"]
        assert [c["frame"] for c in a["crops"]] == [c["frame"] for c in b["crops"]]
        assert np.abs(np.array([c["box"] for c in a["crops"]]) - [c["box"] for c in b["crops"]]).max() < 1.0
    rerun = run_batch(items, tmp_path / "decord", replace(PARAMS, video_backend="pyav"), progress=False)
    assert rerun["skipped"] == 2
    with pytest.raises(SystemExit) as e:
        extract_main([str(clips / "moving.mp4"), "--out", str(tmp_path / "cli"), "--backend", "nope"])
    assert e.value.code == 2 and "invalid choice: 'nope'" in capsys.readouterr().err


def test_workers_spread_over_the_visible_gpus():
    from deepfake_ssat.faces.extract import worker_device

    assert [worker_device("cuda", w, 4) for w in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0",
                                                               "cuda:1"]
    assert [worker_device("cuda", w, 1) for w in range(2)] == ["cuda", "cuda"]
    assert worker_device("cuda:2", 5, 4) == "cuda:2" and worker_device("cpu", 3, 0) == "cpu"
