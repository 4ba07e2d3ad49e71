"""Your own labelled videos: tools/extract_faces.py --list CSV (path,label[,group][,split]) and data.name: list
(group-safe splits, explicit splits, training), on real-codec videos with real faces and real MTCNN extraction."""
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deepfake_ssat.commands.extract_faces import main as extract_main
from deepfake_ssat.commands.train import main as train_main
from deepfake_ssat.data import FACE_CLIP_DATASETS, NUM_CLASSES, build_face_clips
from deepfake_ssat.data.faceclips import DatasetError
from deepfake_ssat.synthetic.layouts import VideoSpec, _scene
from deepfake_ssat.synthetic.scenes import MANIPULATIONS, write_face_video

EXTRACT = ["--frames", "8", "--size", "48", "--min-face", "20", "--no-progress"]
# four identities (a real video and its fake each), two videos without a group, one listed file that is missing;
# carol is fixed to val by one of her rows, dave to test by both
LIST = """path,label,group,split
alice/real.mp4,REAL,alice,
alice/fake.mp4,FAKE,alice,
bob/real.mp4,0,bob,
bob/fake.mp4,1,bob,
carol/real.mp4,real,carol,val
carol/fake.mp4,fake,carol,
dave/real.mp4,REAL,dave,TEST
dave/fake.mp4,FAKE,dave,test
solo_real.mp4,REAL,,
solo_fake.mp4,FAKE,,
gone.mp4,FAKE,erin,
"""
VIDEOS = [line.split(",")[0] for line in LIST.splitlines()[1:-1]]


def _write_videos(src: Path) -> None:
    """Each identity: a face path and background; its fake repeats them with a manipulation (as write_dfdc)."""
    rng, spec, methods = np.random.default_rng(0), VideoSpec(), list(MANIPULATIONS.values())
    scenes: dict[str, tuple] = {}
    for n, name in enumerate(VIDEOS):
        who = name.split("/")[0] if "/" in name else name
        path, background = scenes.setdefault(who, _scene(rng, spec))
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        write_face_video(src / name, spec.width, spec.height, spec.num_frames, [path], background=background,
                         manipulation=methods[n % len(methods)] if "fake" in name else None)


def _extract(csv: Path, out: Path) -> int:
    return extract_main(["--list", str(csv), "--out", str(out), *EXTRACT])


def _manifest(root: Path, video: str) -> dict:
    return json.loads((root / "list" / Path(video).with_suffix("") / "manifest.json").read_text())


def _relist(data, tmp_path: Path, name: str, text: str) -> Path:
    """A copy of the extraction rerun with ``text`` as the list: it relabels, it extracts nothing."""
    root = tmp_path / name
    shutil.copytree(data.out, root)
    (data.src / f"{name}.csv").write_text(text)
    assert _extract(data.src / f"{name}.csv", root) == 0
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("video_list")
    src = tmp / "videos"
    _write_videos(src)
    (src / "list.csv").write_text(LIST)
    assert _extract(src / "list.csv", tmp / "faces") == 0
    return SimpleNamespace(src=src, out=tmp / "faces")


def test_extraction_keeps_labels_groups_splits_and_records_missing(data):
    summary = json.loads((data.out / "summary.json").read_text())
    assert summary["counts"] == {"ok": 10, "missing": 1}
    gone = [v for v in summary["videos"] if v["status"] == "missing"]
    assert [v["key"] for v in gone] == ["list/gone"] and "line 12" in gone[0]["reason"]
    assert not (data.out / "list" / "gone").exists()
    m = _manifest(data.out, "alice/fake.mp4")
    assert (m["dataset"], m["video_id"], m["label"], m["group"], m["split"]) == ("list", "alice/fake", 1, "alice",
                                                                                 None)
    assert (_manifest(data.out, "bob/real.mp4")["label"], _manifest(data.out, "bob/fake.mp4")["label"]) == (0, 1)
    assert _manifest(data.out, "dave/real.mp4")["split"] == "test"  # TEST: case-insensitive
    assert (_manifest(data.out, "carol/real.mp4")["split"], _manifest(data.out, "carol/fake.mp4")["split"]) == (
        "val", None)
    solo = _manifest(data.out, "solo_real.mp4")
    assert (solo["label"], solo["group"], solo["split"]) == (0, None, None) and len(solo["crops"]) == 8
    rows = [json.loads(line) for line in (data.out / "index.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and {(r["group"], r["split"]) for r in rows if r["video_id"] == "dave/fake"} == {
        ("dave", "test")}


@pytest.mark.parametrize("text, line, says", [
    ("file,label\nalice/real.mp4,REAL\n", 1, "header must be path,label[,group][,split]"),
    ("path,label\nalice/real.mp4,REAL\nbob/real.mp4,MAYBE\n", 3, "unknown label 'MAYBE'"),
    ("path,label\nalice/real.mp4,REAL\nbob/real.mp4,REAL\n./alice/real.mp4,FAKE\n", 4, "already listed on line 2"),
    ("path,label,split\nalice/real.mp4,REAL,train\nbob/real.mp4,FAKE,testing\n", 3, "unknown split 'testing'"),
], ids=["header", "label", "duplicate", "split"])
def test_bad_list_is_one_error_line_and_writes_nothing(data, tmp_path, capsys, text, line, says):
    csv = data.src / f"bad_{tmp_path.name}.csv"
    csv.write_text(text)
    assert _extract(csv, tmp_path / "out") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {csv}: line {line}: ") and says in err[0], err
    assert not (tmp_path / "out").exists()


def test_rerun_with_edited_list_relabels_without_extracting(data, tmp_path):
    root = tmp_path / "relabel"
    shutil.copytree(data.out, root)
    before = {p: p.stat().st_mtime_ns for p in root.glob("list/**/crops.tar")}
    edited = LIST.replace("alice/fake.mp4,FAKE,alice,", "alice/fake.mp4,REAL,alice,").replace(
        "bob/real.mp4,0,bob,", "bob/real.mp4,0,robert,train")
    (data.src / "edited.csv").write_text(edited)
    assert _extract(data.src / "edited.csv", root) == 0
    summary = json.loads((root / "summary.json").read_text())
    assert summary["skipped"] == 10 and summary["num_crops"] == 80
    assert len(before) == 10 and {p: p.stat().st_mtime_ns for p in root.glob("list/**/crops.tar")} == before
    assert _manifest(root, "alice/fake.mp4")["label"] == 0
    bob = _manifest(root, "bob/real.mp4")
    assert (bob["group"], bob["split"], bob["label"]) == ("robert", "train", 0)
    ds = build_face_clips("list", root, 32, 8)  # labels come from the manifests (through the rebuilt index)
    videos = {v.video_id: v for split in ds.values() for v in split.videos}
    assert videos["alice/fake"].label == 0 and videos["alice/real"].label == 0
    assert "bob/real" in {v.video_id for v in ds["train"].videos}


def _group(v) -> str:
    return v.group or v.key


def test_splits_are_group_safe_explicit_and_seeded(data):
    assert "list" in FACE_CLIP_DATASETS and NUM_CLASSES["list"] == 2
    seen = set()
    for seed in range(6):
        ds = build_face_clips("list", data.out, 32, 8, split_seed=seed, val_fraction=0.2, test_fraction=0.2)
        assert list(ds) == ["train", "val", "test"]
        split_of = {v.key: s for s, d in ds.items() for v in d.videos}
        assert sorted(k.removeprefix("list/-/-/") + ".mp4" for k in split_of) == sorted(VIDEOS)
        groups: dict[str, set] = {}
        for s, d in ds.items():
            for v in d.videos:
                groups.setdefault(_group(v), set()).add(s)
        assert all(len(s) == 1 for s in groups.values()), groups  # no group in two splits
        assert groups["dave"] == {"test"} and groups["carol"] == {"val"}  # carol/fake follows carol/real
        again = build_face_clips("list", data.out, 32, 8, split_seed=seed, val_fraction=0.2, test_fraction=0.2)
        assert {v.key: s for s, d in again.items() for v in d.videos} == split_of  # same seed, same split
        seen.add(tuple(sorted(split_of.items())))
    assert len(seen) > 1  # the seed draws the groups without a split
    test = build_face_clips("list", data.out, 32, 8, only=("test",))
    assert list(test) == ["test"] and {v.label for v in test["test"].videos} == {0, 1}
    x, y, key = test["test"][0]
    assert x.shape == (3, 8, 32, 32) and key.startswith("list/-/-/")


def test_conflicting_explicit_splits_in_a_group_and_empty_split(data, tmp_path, capsys):
    root = _relist(data, tmp_path, "conflict", LIST.replace("dave/fake.mp4,FAKE,dave,test",
                                                            "dave/fake.mp4,FAKE,dave,val"))
    with pytest.raises(DatasetError, match=r"group 'dave' is in split val \(dave/fake\) and in split test "
                                           r"\(dave/real\); a group must stay in one split") as e:
        build_face_clips("list", root, 32, 8)
    assert "\n" not in str(e.value)
    assert train_main(["--config", "video/tiny/list_videomae_095", "--out", str(tmp_path / "run"),
                       "--opts", f"data.root={root}"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: data: video list group 'dave'"), err
    # every video given a split (dave test, the rest train): the fractions draw nothing, so val stays empty
    fixed = "".join(line + ("train\n" if line.endswith(",") else "\n")
                    for line in LIST.replace(",val", ",").splitlines())
    root = _relist(data, tmp_path, "fixed", fixed)
    ds = build_face_clips("list", root, 32, 8, only=("train", "test"))
    assert {_group(v) for v in ds["test"].videos} == {"dave"}
    with pytest.raises(DatasetError, match="data: list split 'val' is empty"):
        build_face_clips("list", root, 32, 8)


def test_tiny_list_config_trains_and_tests_by_video(data, tmp_path, capsys):
    fast = ["train.epochs=1", "data.loader.batch_size=2", "train.blr=1.0e-2", "train.warmup_epochs=0",
            "data.augment=false"]
    assert train_main(["--config", "video/tiny/list_videomae_095", "--out", str(tmp_path / "run"),
                       "--opts", f"data.root={data.out}", *fast]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary == json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["selected_by"] == "auc" and summary["test_acc1"] is not None  # video AUC: a face-clip dataset
    assert {"acc", "auc", "log_loss", "eer"} <= summary["test_video"].keys()
    assert summary["test_video"]["auc"] is not None  # dave's real and fake are in test


def test_data_video_list_trains_on_the_csv_as_it_is_now(data, tmp_path, capsys):
    """data.faces.video_list: a video dropped from the CSV is dropped from training, a label edited in the CSV counts
    without rerunning the extraction, a listed video without extraction is reported."""
    edited = LIST.replace("solo_fake.mp4,FAKE,,\n", "").replace("alice/fake.mp4,FAKE,alice,",
                                                                 "alice/fake.mp4,REAL,alice,")
    csv = data.src / "now.csv"
    csv.write_text(edited)
    ds = build_face_clips("list", data.out, 32, 8, video_list=csv)
    videos = {v.video_id: v for d in ds.values() for v in d.videos}
    assert "solo_fake" not in videos and len(videos) == 9
    assert videos["alice/fake"].label == 0 and videos["dave/real"].split == "test"
    out = capsys.readouterr().out
    assert "1 listed videos have no usable extraction" in out and "gone.mp4" in out
    csv.write_text("path,label\nalice/real.mp4,MAYBE\n")
    with pytest.raises(DatasetError, match=r"^data.faces.video_list: .*now.csv: line 2: unknown label 'MAYBE'"):
        build_face_clips("list", data.out, 32, 8, video_list=csv)


def test_evaluate_list_split_scores_the_split_training_drew(data, tmp_path, capsys):
    """tools/evaluate.py --dataset list --split test scores exactly the test videos the training run held out (its
    own split settings and data.faces.video_list, read from the checkpoint's config)."""
    from deepfake_ssat.commands.evaluate import main as evaluate_main

    (data.src / "eval.csv").write_text(LIST)
    fast = ["train.epochs=1", "data.loader.batch_size=2", "train.warmup_epochs=0", "data.augment=false",
            "data.split_seed=3", "data.test_fraction=0.3", f"data.faces.video_list={data.src / 'eval.csv'}"]
    assert train_main(["--config", "video/tiny/list_videomae_095", "--out", str(tmp_path / "run"),
                       "--opts", f"data.root={data.out}", *fast]) == 0
    held_out = {v["key"] for v in json.loads((tmp_path / "run" / "data_manifest.json").read_text())["splits"]["test"]}
    assert evaluate_main(["--checkpoint", str(tmp_path / "run" / "best.pt"), "--dataset", "list", "--split", "test",
                          "--data-root", str(data.out), "--out", str(tmp_path / "eval"), "--name", "mine"]) == 0
    capsys.readouterr()
    rows = (tmp_path / "eval" / "mine" / "predictions_list_test.csv").read_text().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == held_out and len(held_out) >= 3
