"""The face store (issue 14): one container file per video, one index for the whole store, clips read with one open.

Real MTCNN extractions (tools/extract_faces.py, 8 frames, 48 px crops) of four DFDC-layout videos, once per format.
"""
import builtins
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfake_ssat.commands.extract_faces import main as extract_main
from deepfake_ssat.data.faceclips import DatasetError, FaceClipDataset, read_clip, scan_extraction
from deepfake_ssat.data.transforms import _SCALE, _SHIFT, clip_tensor
from deepfake_ssat.faces import extract as extract_mod
from deepfake_ssat.synthetic.layouts import write_dfdc
from deepfake_ssat.faces.store import DEFAULT_FORMAT, FORMATS, INDEX_NAME, as_stored, read_index

CLI = ["--frames", "8", "--size", "48", "--min-face", "20", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """{format: extraction root} of the same 4 videos (2 DFDC parts x 1 original x 1 fake), and the videos."""
    root = tmp_path_factory.mktemp("store")
    write_dfdc(root / "dfdc", num_parts=2, originals_per_part=1, fakes_per_original=1)
    out = {}
    for store in FORMATS:
        out[store] = root / store
        assert extract_main([str(root / "dfdc"), "--out", str(out[store]), "--format", store, *CLI]) == 0
    out["videos"] = root / "dfdc"
    return out


def _folders(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("manifest.json"))


def _scan(root: Path) -> dict:
    return {v.key: v for v in scan_extraction(root, 8, 1, 48)[0]}


def _all_crops(video) -> np.ndarray:
    return read_clip(video, 0, list(range(len(video.segments[0]))))


def test_default_format_is_one_tar_of_jpegs_beside_the_manifest(stores):
    assert DEFAULT_FORMAT == "tar"
    folders = _folders(stores["tar"])
    assert len(folders) == 4
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["crops.tar", "manifest.json"]  # <= 2 files a video
        m = json.loads((folder / "manifest.json").read_text())
        assert m["container"] == "crops.tar" and m["params"]["store"] == "tar" and len(m["crops"]) == 8
        with tarfile.open(folder / "crops.tar") as tar:  # a plain tar: `tar tf` lists the crops
            members = {t.name: t for t in tar.getmembers()}
        for crop in m["crops"]:
            member = members[crop["file"]]
            assert crop["file"] == f"{crop['frame']:06d}.jpg"
            assert (member.offset_data, member.size) == (crop["offset"], crop["size"])
    for folder in _folders(stores["npy"]):
        assert sorted(p.name for p in folder.iterdir()) == ["crops.npy", "manifest.json"]
        assert np.load(folder / "crops.npy").shape == (8, 48, 48, 3)
    for store in ("png", "jpg"):  # one image file per crop, as before
        for folder in _folders(stores[store]):
            assert len(list(folder.glob(f"*.{store}"))) == 8 and not list(folder.glob("crops.*"))


def test_crops_read_back_equal_the_png_extraction(stores):
    png = _scan(stores["png"])
    assert len(png) == 4
    for store in ("tar", "npy", "jpg"):
        videos = _scan(stores[store])
        assert set(videos) == set(png)
        for key, video in videos.items():
            assert [f for f, _ in video.segments[0]] == [f for f, _ in png[key].segments[0]]
            got, want = _all_crops(video).astype(int), _all_crops(png[key]).astype(int)
            if store == "npy":
                assert np.array_equal(got, want)  # raw uint8: exact
            else:
                assert got.shape == want.shape and np.abs(got - want).mean() < 3  # JPEG quality 95
    jpg = _scan(stores["jpg"])
    for key, video in _scan(stores["tar"]).items():  # the tar holds the very bytes of the jpg files
        data = video.container.path.read_bytes()
        for (_, name), (offset, size) in zip(video.segments[0], video.spans[0]):
            assert data[offset:offset + size] == (jpg[key].dir / name).read_bytes()


@pytest.mark.parametrize("store", ["tar", "npy"])
def test_a_clip_read_opens_one_file(stores, monkeypatch, store):
    videos = list(_scan(stores[store]).values())
    train = FaceClipDataset(videos, 48, 8, train=True)
    opened = []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    x, y, key = train[0]
    monkeypatch.undo()
    assert opened == [str(videos[0].container.path)]
    assert x.shape == (3, 8, 48, 48) and key == videos[0].key


def test_the_index_alone_serves_the_scan_and_matches_the_walk(stores, tmp_path, monkeypatch, capsys):
    def no_walk(*args, **kwargs):
        raise AssertionError("tree walk")

    root = stores["tar"]
    monkeypatch.setattr(os, "walk", no_walk)
    monkeypatch.setattr(os, "scandir", no_walk)
    indexed = _scan(root)
    monkeypatch.undo()
    assert len(indexed) == 4 and "--reindex" not in capsys.readouterr().out
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    (copy / INDEX_NAME).unlink()
    walked = _scan(copy)
    hint = capsys.readouterr().out.strip()
    assert hint.count("\n") == 0 and f"dfssat-extract-faces --reindex {copy}" in hint
    assert set(walked) == set(indexed)
    for key, video in walked.items():
        assert video.segments == indexed[key].segments and video.container.path.name == "crops.tar"
        assert all(np.array_equal(a, b) for a, b in zip(video.spans, indexed[key].spans))


def test_a_store_without_index_works_and_reindex_rebuilds_it(stores, tmp_path, capsys):
    root = tmp_path / "png"
    shutil.copytree(stores["png"], root)
    written = (root / INDEX_NAME).read_text()
    (root / INDEX_NAME).write_text(written.replace('"params"', '"old_params"'))  # an older version's index
    assert read_index(root) is None
    assert len(_scan(root)) == 4 and "--reindex" in capsys.readouterr().out
    (root / INDEX_NAME).unlink()
    assert len(_scan(root)) == 4 and "--reindex" in capsys.readouterr().out
    assert extract_main(["--reindex", str(root)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["videos"] == 4 and (root / INDEX_NAME).read_text() == written
    assert len(_scan(root)) == 4 and "--reindex" not in capsys.readouterr().out
    for bad in (["--reindex", str(root), "--out", str(root)], ["--reindex", str(root), str(stores["videos"])]):
        with pytest.raises(SystemExit) as e:
            extract_main(bad)
        assert e.value.code == 2 and "--reindex OUT takes no INPUT" in capsys.readouterr().err
    assert extract_main(["--reindex", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err


def test_a_png_store_of_before_is_kept_on_rerun_and_a_new_format_redoes_it(stores, tmp_path, capsys):
    root = tmp_path / "png"
    shutil.copytree(stores["png"], root)
    assert extract_main([str(stores["videos"]), "--out", str(root), "--format", "png", *CLI]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 4
    assert extract_main([str(stores["videos"]), "--out", str(root), *CLI]) == 0  # default format: re-extracted
    assert json.loads(capsys.readouterr().out)["skipped"] == 0
    assert all(sorted(p.name for p in f.iterdir()) == ["crops.tar", "manifest.json"] for f in _folders(root))
    assert {r["container"] for r in read_index(root)} == {"crops.tar"}


@pytest.mark.parametrize("store", ["tar", "npy"])
def test_a_corrupt_container_is_one_line_naming_the_file(stores, tmp_path, store):
    root = tmp_path / store
    shutil.copytree(stores[store], root)
    videos = list(_scan(root).values())
    container = videos[0].container.path
    data = container.read_bytes()
    container.write_bytes(data[:len(data) // 3])
    ds = FaceClipDataset(videos, 48, 8, train=False)
    with pytest.raises(DatasetError, match=f"{container}: corrupt crop container \\(truncated") as error:
        ds[0]
    assert "\n" not in str(error.value) and "re-run dfssat-extract-faces" in str(error.value)
    if store == "tar":  # the right size, other bytes: no JPEG where the index says
        container.write_bytes(bytes(len(data)))
        with pytest.raises(DatasetError, match=f"{container}: corrupt crop container \\(no 48x48 jpg image"):
            ds[0]
    container.unlink()
    with pytest.raises(DatasetError, match=f"{container}: corrupt crop container \\(cannot read it"):
        ds[0]


def test_two_shards_into_one_root_are_both_indexed(stores, tmp_path, capsys):
    out = tmp_path / "sharded"
    for shard in (1, 0):
        assert extract_main([str(stores["videos"]), "--out", str(out), "--shard", str(shard), "--num-shards", "2",
                             *CLI]) == 0
    summaries = [json.loads((out / f"summary.shard-{i}-of-2.json").read_text()) for i in (0, 1)]
    assert all(s["num_videos"] == 2 for s in summaries)
    assert sorted(r["dir"] for r in read_index(out)) == sorted(r["dir"] for r in read_index(stores["tar"]))


def test_concurrent_index_updates_lose_no_rows(tmp_path, monkeypatch):
    """Two shards finishing together: each merges its own video while the other holds the index lock."""
    manifest = {"tool": "deepfake_ssat.faces", "status": "no_face", "crops": [], "container": None, "params": {}}
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    assert extract_mod.write_index(tmp_path) == 3
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "manifest.json").write_text(json.dumps(manifest))
    real_read = extract_mod.read_index

    def slow_read(root):
        rows = real_read(root)
        time.sleep(0.3)  # a wide window: without the lock the later writer drops the other's row
        return rows

    monkeypatch.setattr(extract_mod, "read_index", slow_read)
    shards = [threading.Thread(target=extract_mod.update_index, args=(tmp_path, {d})) for d in ("d", "e")]
    for t in shards:
        t.start()
    for t in shards:
        t.join()
    assert [r["dir"] for r in read_index(tmp_path)] == ["a", "b", "c", "d", "e"]


_KILLED_AT_THIRD = """
import os, signal, sys
from deepfake_ssat.commands.extract_faces import main
from deepfake_ssat.faces import extract
real, calls = extract.extract_video, []

def third_is_killed(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
        os.kill(os.getpid(), signal.SIGKILL)  # an OOM kill / preemption: no handler, no clean-up
    return real(*args, **kwargs)

extract.extract_video = third_is_killed
main(sys.argv[1:])
"""


def test_a_killed_extraction_leaves_its_finished_videos_indexed(stores, tmp_path, monkeypatch):
    """SIGKILL during a batch: each video went into the index when it was finished, so readers (which trust the
    index and walk nothing) see exactly the finished ones; a torn last append is ignored and cut off by the rerun."""
    out = tmp_path / "killed"
    done = subprocess.run([sys.executable, "-c", _KILLED_AT_THIRD, str(stores["videos"]), "--out", str(out), *CLI],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    finished = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob("manifest.json"))
    assert len(finished) == 2
    with open(out / INDEX_NAME, "a") as f:
        f.write('{"dir": "dfdc/torn", "status": "o')  # an append cut short
    assert [r["dir"] for r in read_index(out)] == finished

    def no_walk(*args, **kwargs):
        raise AssertionError("tree walk")

    monkeypatch.setattr(os, "walk", no_walk)
    monkeypatch.setattr(os, "scandir", no_walk)
    assert len(_scan(out)) == 2
    monkeypatch.undo()
    assert extract_main([str(stores["videos"]), "--out", str(out), *CLI]) == 0
    text = (out / INDEX_NAME).read_text()
    assert "torn" not in text and text.count("\n") == 4
    assert [r["dir"] for r in read_index(out)] == [r["dir"] for r in read_index(stores["tar"])]


def test_appended_rows_replace_earlier_rows_of_their_folder(tmp_path):
    rows = [{"dir": d, "status": "ok", "params": {}, "frames": [], "files": [], "tracks": [], "container": None}
            for d in ("b", "a")]
    (tmp_path / INDEX_NAME).write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(tmp_path / INDEX_NAME, "a") as f:
        f.write(json.dumps({**rows[0], "status": "no_face"}) + "\n")
    assert [(r["dir"], r["status"]) for r in read_index(tmp_path)] == [("a", "ok"), ("b", "no_face")]


@pytest.mark.parametrize("store", ["png", "tar"])
def test_a_store_cannot_point_a_reader_outside_it(stores, tmp_path, capsys, store):
    """Stores are shared: an index row (or, without an index, a manifest) naming a folder, container or crop file
    outside the store is one line naming the index line (or manifest) and what to do; nothing outside is read."""
    root = tmp_path / store
    shutil.copytree(stores[store], root)
    (tmp_path / "secret.png").write_bytes(b"a file beside the store, not in it")
    good = (root / INDEX_NAME).read_text()
    first = json.loads(good.splitlines()[0])
    edits = {"dir": [f"../{root.name}/{first['dir']}", "/etc", f"{first['dir']}/..", "a\\b", 7],
             "container": ["../../secret.png", "/etc/passwd"] if store == "tar" else [],  # (png: no offsets)
             "files": [["../../../secret.png"] + first["files"][1:], ["/etc/passwd"], [""], "crop.png"],
             "frames": [first["frames"][1:], [str(f) for f in first["frames"]], None],  # crops silently lost or a
             "tracks": [[-1] * len(first["files"]), [0.5] * len(first["files"])],       # traceback, without the check
             "offsets": [first["offsets"][:1], [-1] * len(first["files"])] if store == "tar" else []}
    for key, values in edits.items():
        for value in values:
            line = json.dumps({**first, key: value})
            (root / INDEX_NAME).write_text(good.replace(good.splitlines()[0], line, 1))
            with pytest.raises(DatasetError) as error:
                _scan(root)
            message = str(error.value)
            assert message.startswith(f"{root / INDEX_NAME}: line 1: ") and "\n" not in message, message
            assert f"dfssat-extract-faces --reindex {root}" in message
    for junk in (b"[1, 2]\n", b"\xff\xfe\x00binary\n"):
        (root / INDEX_NAME).write_bytes(junk + good.encode())
        with pytest.raises(DatasetError, match="line 1 is not an index row"):
            _scan(root)
    for params in ({}, {**first["params"], "crop_size": "48"}, {**first["params"], "sampling": None}):  # by hand
        (root / INDEX_NAME).write_text(good.replace(good.splitlines()[0], json.dumps({**first, "params": params}), 1))
        with pytest.raises(DatasetError) as error:
            _scan(root)
        assert str(error.value).startswith(f"data.root: {root / first['dir']}: its index row (or manifest) is not "
                                           f"readable (") and "\n" not in str(error.value)

    (root / INDEX_NAME).unlink()  # the walk: a manifest's crop file names are checked the same way
    manifest_path = root / first["dir"] / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["crops"][0]["file"] = "../../../secret.png"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError) as error:
        _scan(root)
    assert str(error.value) == (f"{manifest_path}: crop file '../../../secret.png' is not a plain name in its folder; "
                                f"re-run dfssat-extract-faces on that video")
    assert extract_main(["--reindex", str(root)]) == 0  # a re-index leaves that video out and says so
    out, err = capsys.readouterr()
    reason = f"{manifest_path}: crop file '../../../secret.png' is not a plain name in its folder"
    assert json.loads(out)["videos"] == 3 and json.loads(out)["left_out"] == [str(error.value)]
    assert err.count("\n") == 1 and reason in err
    assert len(read_index(root)) == 3 and len(_scan(root)) == 3


@pytest.mark.parametrize("store", FORMATS)
def test_as_stored_is_what_a_reader_of_the_store_gets(stores, store):
    """The lossless (png) crops through as_stored(., store) are exactly the crops that store returns: the video
    detector's crops match any training store's (JPEG quality 95 for tar / jpg, unchanged for png / npy)."""
    lossless, stored = _scan(stores["png"]), _scan(stores[store])
    assert lossless.keys() == stored.keys()
    for key, video in lossless.items():
        crops = _all_crops(video)
        again = np.stack([as_stored(crop, store) for crop in crops])
        assert np.array_equal(again, _all_crops(stored[key]))
        assert np.array_equal(again, crops) == (store in ("png", "npy"))


def test_clip_tensor_is_the_plain_normalisation():
    frames = np.random.default_rng(0).integers(0, 256, (5, 7, 9, 3), dtype=np.uint8)
    plain = torch.from_numpy(frames).permute(3, 0, 1, 2).float().mul_(_SCALE).add_(_SHIFT)
    assert torch.equal(clip_tensor(frames), plain) and clip_tensor(frames).shape == (3, 5, 7, 9)
    assert torch.equal(clip_tensor(frames[:, :, ::-1]), plain.flip(3))  # a non-contiguous view


def test_loader_and_store_benchmarks(tmp_path, capsys, monkeypatch):
    import os
    from collections import Counter

    import deepfake_ssat.bench.store as bench_store
    from deepfake_ssat.bench.loader import format_loader, run_loader_benchmark
    from deepfake_ssat.commands.benchmark import main as bench_main

    result = run_loader_benchmark(videos=2, frames=8, crop_size=32, img_size=32, clip_len=4, clips=4, repeats=1,
                                  workers=(1,), image_batches=2)
    assert set(result["image_items_per_s_per_worker"]) == {"deit", "simple"}
    assert all(rate > 0 for rate in result["image_items_per_s_per_worker"].values())
    assert "images/s" in format_loader(result)
    assert set(result["formats"]) == set(FORMATS) and result["default_format"] == "tar"
    for r in result["formats"].values():
        assert r["loader_over_decode"] > 0 and r["clips_per_s_per_worker"] > 0 and r["bytes_per_video"] > 0
    assert result["met"] in (True, False) and "tar" in format_loader(result)
    assert set(result["dataloader_clips_per_s"]) == {"1"} and result["dataloader_clips_per_s"]["1"] > 0
    assert "DataLoader 1 workers" in format_loader(result)
    links, link = Counter(), os.link
    monkeypatch.setattr(bench_store, "LINKS_PER_FILE", 12)  # DFDC's 119k videos pass ext4's 65,000 links per file
    monkeypatch.setattr(os, "link", lambda source, target: links.update([source]) or link(source, target))
    assert bench_main(["store", "--videos", "30", "--frames", "4", "--crop-size", "16", "--repeats", "1",
                       "--json"]) == 0
    assert sorted(links.values()) == [6, 12, 12]
    store = json.loads(capsys.readouterr().out)
    assert store["videos"] == 30 and store["with_index"]["scan_seconds"] > 0 and store["walk"]["scan_seconds"] > 0
    start = store["training_start"]  # the trainer's setup_run on the store, then its first batch
    assert 0 < start["setup_seconds"] < start["first_batch_seconds"]
    assert set(store["bytes_per_video"]) == set(FORMATS)
    records = store["records"]
    assert records["row_check_seconds"] >= 0 and records["pack_seconds"] >= 0 and records["packed_video_read_us"] > 0
    assert 100 < records["packed_bytes_per_video"] < 5000
