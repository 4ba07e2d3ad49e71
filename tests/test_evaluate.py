"""tools/evaluate.py: one checkpoint on FF++ / Celeb-DF / DFDC test / a video list, one cross-dataset table."""
import csv
import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, run_env
from sklearn.metrics import roc_auc_score

from deepfake_ssat.commands.evaluate import main as evaluate_main

FFPP_SETS = ["FF++ Deepfakes", "FF++ Face2Face", "FF++ FaceSwap", "FF++ NeuralTextures", "FF++ (all)"]


@pytest.fixture(scope="module")
def cross_faces(tmp_path_factory):
    """Celeb-DF (8 videos, 4 on its test list), the DFDC test set (2 real, 2 fake) and an all-fake video list
    (3 videos, 2 groups), extracted into one root; Celeb-DF's test list copied beside them (its default place)."""
    from deepfake_ssat.commands.extract_faces import main as extract_main
    from deepfake_ssat.synthetic.layouts import write_celebdf, write_dfdc_test

    base = tmp_path_factory.mktemp("cross")
    celeb = write_celebdf(base / "Celeb-DF-v2")
    dfdc_test = write_dfdc_test(base / "dfdc_test_videos")
    mine = write_dfdc_test(base / "mine", num_real=0, num_fake=3, seed=7)
    videos = sorted(mine.glob("*.mp4"))
    (mine / "my.csv").write_text("path,label,group\n" + "".join(
        f"{v.name},FAKE,person{i % 2}\n" for i, v in enumerate(videos)))
    root = base / "faces"
    assert extract_main([str(celeb), str(dfdc_test), "--list", str(mine / "my.csv"), "--out", str(root),
                         "--frames", "8", "--size", "48", "--min-face", "20", "--no-progress"]) == 0
    (root / "List_of_testing_videos.txt").write_text((celeb / "List_of_testing_videos.txt").read_text())
    return SimpleNamespace(root=root, celeb=celeb, dfdc_test=dfdc_test, list_videos=videos)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Untrained tiny VideoMAE scratch checkpoints (a random head, so scores vary): ``good``, ``nan`` (a NaN head
    bias, saved through save_checkpoint) and ``good`` exported as a detector pair."""
    from deepfake_ssat.config import config_to_dict, load_config
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.checkpoint import save_checkpoint
    from deepfake_ssat.engine.weights import save_detector

    root = tmp_path_factory.mktemp("ckpts")
    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    paths = {}
    for name in ("good", "nan"):
        torch.manual_seed(0)
        model = build_model(cfg, 2)
        with torch.no_grad():
            model.encoder.head.weight.normal_(0, 3.0)
            if name == "nan":
                model.encoder.head.bias[0] = float("nan")
        paths[name] = root / name / "best.pt"
        paths[name].parent.mkdir()
        save_checkpoint(paths[name], {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {}})
        if name == "good":
            paths["detector"] = save_detector(root / "export" / "detector", model.encoder.state_dict(),
                                              config_to_dict(cfg), {})[0]
    return paths


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _strict_json(path):
    return json.loads(Path(path).read_text(), parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}"))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _md_table(md, title):
    """(header cells, {model: cells}) of the markdown table under ``## title``."""
    lines = md.split(f"## {title}\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if not line.startswith("|---")]
    return cells[0][1:], {row[0]: row[1:] for row in cells[1:]}


def test_every_dataset_in_one_table(face_data, cross_faces, ckpts, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpts["good"]), "--dataset", "ffpp", "--dataset", "celebdf", "--dataset", "dfdc-test",
            "--dataset", "list", "--data-root", str(face_data.ffpp), "--data-root", str(cross_faces.root),
            "--data-root", str(cross_faces.root), "--data-root", str(cross_faces.root),
            "--splits-dir", str(face_data.splits), "--device", "cpu", "--out", str(out)]
    assert evaluate_main(argv) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    written = json.loads(printed[-1])
    assert all(Path(written[k]).is_file() for k in ("md", "csv", "json"))
    assert sorted(Path(p).name for p in written["roc"]) == ["roc_celebdf.png", "roc_dfdc_test.png", "roc_ffpp_c23.png"]
    columns = FFPP_SETS + ["Celeb-DF", "DFDC test", "List"]
    saved = _strict_json(out / "results.json")
    assert saved["columns"] == columns and [r["test_set"] for r in saved["records"]] == columns
    records = {r["test_set"]: r for r in saved["records"]}
    digest = torch.load(ckpts["good"], weights_only=True)["model_sha256"]
    assert {(r["model"], r["checkpoint"], r["model_sha256"], r["strategy"]) for r in records.values()} == {
        ("good", str(ckpts["good"].resolve()), digest, "mean")}
    assert records["FF++ (all)"]["compression"] == "c23" and records["Celeb-DF"]["compression"] is None
    assert records["Celeb-DF"]["data_root"] == str(cross_faces.root.resolve())
    # the markdown: one table per metric, rows = models, columns = test sets
    md = (out / "results.md").read_text()
    assert md in "\n".join(printed)
    for title in ("AUC (%)", "ACC (%)", "AP (%)", "Log-loss (nats, lower is better)", "EER (%, lower is better)"):
        header, rows = _md_table(md, title)
        assert header == columns and list(rows) == ["good"]
    # every metric is recomputed from the per-video predictions
    folder = out / "good"
    for name, record in records.items():
        preds = _rows(folder / Path(record["predictions"]).name)
        method = name.split()[-1] if name.startswith("FF++") and name != "FF++ (all)" else None
        chosen = [p for p in preds if method is None or p["label"] == "0" or p["method"] == method]
        labels, probs = [int(p["label"]) for p in chosen], [float(p["prob"]) for p in chosen]
        m = record["metrics"]
        assert (m["n"], m["n_fake"]) == (len(labels), sum(labels))
        assert m["acc"] == pytest.approx(100 * sum((p >= 0.5) == (y == 1) for y, p in zip(labels, probs)) / len(labels))
        if 0 < sum(labels) < len(labels):
            assert math.isfinite(m["log_loss"]) and m["auc"] == pytest.approx(roc_auc_score(labels, probs))
    _, auc = _md_table(md, "AUC (%)")
    assert auc["good"][columns.index("Celeb-DF")] == f"{100 * records['Celeb-DF']['metrics']['auc']:.2f}"
    # FF++: the official test split (1 pair: 2 originals, 2 fakes per method); a method's set = its fakes + originals
    ffpp = _rows(folder / "predictions_ffpp_c23.csv")
    assert len(ffpp) == 10 and {p["method"] for p in ffpp} == {"original", *(s.split()[1] for s in FFPP_SETS[:4])}
    assert records["FF++ Deepfakes"]["metrics"]["n_real"] == 2 and records["FF++ (all)"]["metrics"]["n_fake"] == 8
    # Celeb-DF: exactly the listed videos, their labels flipped (1 = real in the list, fake = 1 here)
    listed = {}
    for line in (cross_faces.celeb / "List_of_testing_videos.txt").read_text().split("\n"):
        if line:
            label, rel = line.split()
            listed[rel.rsplit(".", 1)[0]] = 1 - int(label)
    celeb = _rows(folder / "predictions_celebdf.csv")
    assert {f"{p['method']}/{p['video_id']}": int(p["label"]) for p in celeb} == listed
    assert len(celeb) == 4 < len(list(cross_faces.celeb.rglob("*.mp4")))
    # DFDC test: the labels of labels.csv (1 = fake)
    truth = {r["filename"].rsplit(".", 1)[0]: int(r["label"]) for r in _rows(cross_faces.dfdc_test / "labels.csv")}
    assert {p["video_id"]: int(p["label"]) for p in _rows(folder / "predictions_dfdc_test.csv")} == truth
    # the all-fake list: AUC / AP / EER undefined -> missing (null, empty, –), never NaN; no ROC
    lst = records["List"]["metrics"]
    assert lst["auc"] is None and lst["ap"] is None and lst["eer"] is None and lst["n_fake"] == 3
    assert math.isfinite(lst["acc"]) and not (folder / "roc_list.png").exists()
    for title in ("AUC (%)", "AP (%)", "EER (%, lower is better)"):
        assert _md_table(md, title)[1]["good"][-1] == "–"
    table = {r["test_set"]: r for r in _rows(out / "results.csv")}
    assert list(table) == columns and table["List"]["auc"] == "" and "nan" not in (out / "results.csv").read_text()
    assert float(table["Celeb-DF"]["auc"]) == records["Celeb-DF"]["metrics"]["auc"]
    assert {"n_real", "n_fake", "balanced_acc", "log_loss", "eer", "ap"} <= set(table["List"])


def test_runs_merge_into_one_table(cross_faces, ckpts, tmp_path, capsys):
    """One root for several datasets; a second checkpoint (an exported detector) and a rerun merge, never lose."""
    out = tmp_path / "eval"
    first = ["--checkpoint", str(ckpts["good"]), "--dataset", "dfdc-test", "--dataset", "celebdf", "--data-root",
             str(cross_faces.root), "--device", "cpu", "--out", str(out)]
    assert evaluate_main(first) == 0
    assert evaluate_main(["--checkpoint", str(ckpts["detector"]), "--name", "shared model", "--dataset", "dfdc-test",
                          "--data-root", str(cross_faces.root), "--device", "cpu", "--out", str(out)]) == 0
    saved = _strict_json(out / "results.json")
    assert [(r["model"], r["test_set"]) for r in saved["records"]] == [
        ("good", "DFDC test"), ("good", "Celeb-DF"), ("shared model", "DFDC test")]
    assert saved["columns"] == ["Celeb-DF", "DFDC test"]  # dataset order, whatever the run order
    detector = saved["records"][-1]
    assert detector["model_sha256"] == json.loads(ckpts["detector"].with_suffix(".json").read_text())["sha256"]
    assert (out / "shared_model" / "predictions_dfdc_test.csv").is_file()  # a safe folder name
    assert detector["metrics"] == saved["records"][0]["metrics"]  # the same weights give the same scores
    _, rows = _md_table((out / "results.md").read_text(), "AUC (%)")
    assert list(rows) == ["good", "shared model"] and rows["shared model"][0] == "–"
    assert evaluate_main(first[:4] + first[6:]) == 0  # the same (model, test set) again: replaced, not added
    again = _strict_json(out / "results.json")["records"]
    assert [(r["model"], r["test_set"]) for r in again] == [
        ("good", "Celeb-DF"), ("shared model", "DFDC test"), ("good", "DFDC test")]


def test_nan_scores_are_an_error_not_a_verdict(cross_faces, ckpts, tmp_path, capsys):
    out = tmp_path / "eval"
    assert evaluate_main(["--checkpoint", str(ckpts["nan"]), "--dataset", "dfdc-test", "--data-root",
                          str(cross_faces.root), "--device", "cpu", "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {ckpts['nan']}: model output is not finite (NaN)") and "dfdc_test/" in line, line
    assert not (out / "results.json").exists() and not list(out.rglob("predictions_*.csv"))


def test_bad_input_is_one_line(face_data, cross_faces, ckpts, tmp_path, capsys):
    good, root = str(ckpts["good"]), str(cross_faces.root)

    def error(*args, out=tmp_path / "o"):
        assert evaluate_main([*args, "--device", "cpu", "--out", str(out)]) == 2
        line = _one_line(capsys.readouterr().err)
        assert line.startswith("error: "), line
        return line[len("error: "):]

    missing = tmp_path / "none.pt"
    assert error("--checkpoint", str(missing), "--dataset", "list", "--data-root", root) == \
        f"--checkpoint: {missing} not found"
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert "not a readable checkpoint" in error("--checkpoint", str(junk), "--dataset", "list", "--data-root", root)
    unsafe = tmp_path / "unsafe.pt"
    torch.save({"config": {}, "model": {}, "extra": Path("x")}, unsafe)  # a pickled object: never unpickled
    assert error("--checkpoint", str(unsafe), "--dataset", "list", "--data-root", root).startswith(
        f"{unsafe}: refused: it holds Python objects that could run code")
    assert error("--checkpoint", good, "--dataset", "list", "--data-root", str(tmp_path / "nowhere")).startswith(
        f"--data-root: {tmp_path / 'nowhere'} is not a folder")
    no_dfdc = error("--checkpoint", good, "--dataset", "dfdc-test", "--data-root", str(face_data.ffpp))
    assert str(face_data.ffpp) in no_dfdc
    assert f"dfssat-extract-faces <DFDC test folder with labels.csv> --out {face_data.ffpp}" in no_dfdc
    no_ffpp = error("--checkpoint", good, "--dataset", "ffpp", "--data-root", root)
    assert root in no_ffpp and f"dfssat-extract-faces <FF++ root> --out {root}" in no_ffpp
    no_list = error("--checkpoint", good, "--dataset", "celebdf", "--data-root", str(face_data.ffpp))
    assert f"{face_data.ffpp / 'List_of_testing_videos.txt'}" in no_list and "give --test-list" in no_list
    assert error("--checkpoint", good, "--dataset", "list", "--dataset", "celebdf", "--data-root", root,
                 "--data-root", root, "--data-root", root).startswith("--data-root: given 3 times for 2 --dataset")
    assert "is for --dataset celebdf" in error("--checkpoint", good, "--dataset", "list", "--data-root", root,
                                               "--test-list", str(cross_faces.celeb / "List_of_testing_videos.txt"))
    taken = tmp_path / "results.txt"
    taken.write_text("keep me\n")
    assert error("--checkpoint", good, "--dataset", "list", "--data-root", root, out=taken) == \
        f"--out {taken}: is an existing file; give a folder"
    assert taken.read_text() == "keep me\n"
    table8 = tmp_path / "table8"
    table8.mkdir()
    (table8 / "results.json").write_text(json.dumps({"columns": [], "level": "video", "records": []}))
    assert "not a cross-dataset table" in error("--checkpoint", good, "--dataset", "list", "--data-root", root,
                                                out=table8)
    assert not (tmp_path / "o").exists()  # nothing was written by any refused run
    # through the tool script: the same one line, exit 2
    run = subprocess.run([sys.executable, str(ROOT / "tools/evaluate.py"), "--checkpoint", str(missing), "--dataset",
                          "list", "--data-root", root, "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=run_env(), timeout=120)
    assert run.returncode == 2 and run.stderr.strip() == f"error: --checkpoint: {missing} not found"


def test_ctrl_c_keeps_the_finished_datasets(cross_faces, ckpts, tmp_path, capsys, monkeypatch):
    import deepfake_ssat.eval.crossdata as crossdata

    scored = []

    def evaluate(detector, sets, *args, **kwargs):  # Ctrl-C while the second dataset is scored
        if scored:
            raise KeyboardInterrupt
        scored.append(sets.dataset)
        return real(detector, sets, *args, **kwargs)

    real = crossdata.evaluate
    monkeypatch.setattr(crossdata, "evaluate", evaluate)
    out = tmp_path / "eval"
    argv = ["--checkpoint", str(ckpts["good"]), "--dataset", "dfdc-test", "--dataset", "list", "--data-root",
            str(cross_faces.root), "--device", "cpu", "--out", str(out)]
    assert evaluate_main(argv) == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"interrupted: results of the finished test sets (DFDC test) kept in {out / 'results.md'}")
    assert line.endswith("continue with: dfssat-evaluate " + " ".join(argv))
    assert [r["test_set"] for r in _strict_json(out / "results.json")["records"]] == ["DFDC test"]


def test_cli_and_library_know_the_same_datasets():
    from deepfake_ssat.commands.evaluate import DATASET_CHOICES
    from deepfake_ssat.eval import crossdata

    assert DATASET_CHOICES == crossdata.DATASETS
    assert "dfssat-evaluate = deepfake_ssat.commands:evaluate" in (ROOT / "setup.cfg").read_text()
