"""tools/eval_ff.py (issue 5): zero-shot and a cross-manipulation fold on test-made FF++ crops."""
import csv
import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_env

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import fit
from deepfake_ssat.commands.eval_ff import main as eval_ff_main


@pytest.fixture(scope="module")
def dfdc_checkpoint(face_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dfdc_run")
    cfg = load_config("video/tiny/dfdc_videomae_095",
                      [f"data.root={face_data.dfdc}", "train.epochs=1", "data.batch_size=2"])
    fit(cfg, out)
    return out / "best.pt"


@pytest.mark.slow
def test_zero_shot_and_cross_fold_write_table_8(face_data, dfdc_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    code = eval_ff_main(["--zero-shot", "--leave-out", "NeuralTextures", "--checkpoint", str(dfdc_checkpoint),
                         "--data-root", str(face_data.ffpp), "--splits-dir", str(face_data.splits),
                         "--config", str(ROOT / "configs/video/tiny/ffpp_videomae_095.yaml"), "--name", "ssat",
                         "--opts", "train.epochs=1", "data.batch_size=2", "--out", str(out)])
    assert code == 0
    md = (out / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert [c.strip() for c in header.strip("|").split("|")][1:5] == [
        "Deepfakes (cross)", "Face2Face (cross)", "FaceSwap (cross)", "NeuralTextures (cross)"]
    row = next(line for line in md.splitlines() if line.startswith("| ssat"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["–"] * 3 and cells[4] != "–" and all(c != "–" for c in cells[5:9])
    records = json.loads((out / "results.json").read_text())["records"]
    assert {(r["protocol"], r["method"]) for r in records} == {
        ("cross", "NeuralTextures"), *(("zero-shot", m) for m in ("Deepfakes", "Face2Face", "FaceSwap",
                                                                   "NeuralTextures"))}
    with open(out / "predictions_zero_shot.csv") as f:
        videos = list(csv.DictReader(f))
    # 1 test pair: 2 originals + 2 fakes per method, each its own video (never merged across methods)
    assert len(videos) == len({v["key"] for v in videos}) == 2 + 4 * 2
    assert {v["key"] for v in videos if v["video_id"] == "007_006"} == {
        f"ffpp/{m}/c23/007_006" for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")}
    assert (out / "roc_zero_shot.png").stat().st_size > 0 and (out / "roc_cross.png").stat().st_size > 0
    fold = out / "cross" / "NeuralTextures"
    trained_on = json.loads((fold / "data_manifest.json").read_text())["splits"]["train"]
    assert not any("/NeuralTextures/" in v["key"] for v in trained_on)  # the left-out method is never trained on
    tested = list(csv.DictReader(open(fold / "predictions_test.csv")))
    assert {v["method"] for v in tested} == {"original", "NeuralTextures"}
    # a second run (scratch row) merges into the same table
    assert eval_ff_main(["--leave-out", "Deepfakes", "--scratch", "--data-root", str(face_data.ffpp),
                         "--splits-dir", str(face_data.splits), "--config",
                         str(ROOT / "configs/video/tiny/ffpp_videomae_scratch.yaml"), "--opts", "train.epochs=1",
                         "data.batch_size=2", "--out", str(out)]) == 0
    models = {r["model"] for r in json.loads((out / "results.json").read_text())["records"]}
    assert models == {"ssat", "Scratch"}


def test_eval_ff_bad_input_is_one_line(face_data, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "tools/eval_ff.py"), *args, "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, env=run_env(), timeout=120)

    missing = run("--zero-shot", "--checkpoint", str(tmp_path / "none.pt"), "--data-root", str(face_data.ffpp))
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: --checkpoint: {tmp_path / 'none.pt'} not found"
    empty = tmp_path / "empty"
    empty.mkdir()
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"junk")
    no_data = run("--zero-shot", "--checkpoint", str(ckpt), "--data-root", str(empty))
    assert no_data.returncode == 2 and len(no_data.stderr.strip().splitlines()) == 1
    neither = run("--data-root", str(empty))
    assert neither.returncode == 2 and "give --leave-out" in neither.stderr


# ------------------------------------------------------------------ safe in a user's hands (no NaN, Ctrl-C)


def _strict_json(text):
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}"))


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    """Untrained tiny VideoMAE checkpoints (no training): ``good`` and ``nan`` (one weight NaN: every logit NaN)."""
    import torch

    from deepfake_ssat.config import config_to_dict
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("tiny_ckpts")
    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    paths = {}
    for name in ("good", "nan"):
        torch.manual_seed(0)
        model = build_model(cfg, 2)
        if name == "nan":
            with torch.no_grad():
                model.encoder.head.bias[0] = float("nan")
        paths[name] = root / name / "best.pt"
        paths[name].parent.mkdir()
        save_checkpoint(paths[name], {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {}})
    return paths


def _zero_shot_argv(face_data, ckpt, out):
    return ["--zero-shot", "--checkpoint", str(ckpt), "--data-root", str(face_data.ffpp), "--splits-dir",
            str(face_data.splits), "--name", "tiny", "--device", "cpu", "--out", str(out)]


def test_eval_ff_nan_scores_are_an_error_not_an_accuracy(face_data, tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "eval"
    assert eval_ff_main(_zero_shot_argv(face_data, tiny_ckpts["nan"], out)) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tiny_ckpts['nan']}: model output is not finite (NaN) for ") and \
        "(first: video ffpp/" in line and line.endswith("the weights may be corrupted"), line
    assert not (out / "results.json").exists() and not (out / "predictions_zero_shot.csv").exists()


def test_eval_ff_out_that_is_a_file_is_refused_first(face_data, tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("keep me\n")
    assert eval_ff_main(_zero_shot_argv(face_data, tiny_ckpts["good"], out)) == 2
    assert _one_line(capsys.readouterr().err) == f"error: --out {out}: is an existing file; give a folder"
    assert out.read_text() == "keep me\n"


def test_eval_ff_ctrl_c_keeps_the_finished_protocols(face_data, tiny_ckpts, tmp_path, capsys, monkeypatch):
    import deepfake_ssat.engine

    def fit(cfg, run, *args, **kwargs):  # Ctrl-C while the cross-manipulation fold trains
        raise KeyboardInterrupt

    monkeypatch.setattr(deepfake_ssat.engine, "fit", fit)
    out = tmp_path / "eval"
    argv = _zero_shot_argv(face_data, tiny_ckpts["good"], out) + [
        "--leave-out", "NeuralTextures", "--config", str(ROOT / "configs/video/tiny/ffpp_videomae_095.yaml")]
    try:
        code = eval_ff_main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped eval_ff_main (the user sees a traceback)")
    assert code == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"interrupted: results of the finished zero-shot kept in {out / 'results.md'}"), line
    assert "a rerun evaluates every requested protocol and fold again" in line
    assert line.endswith("continue with: python tools/eval_ff.py " + " ".join(argv))
    records = _strict_json((out / "results.json").read_text())["records"]
    assert {(r["protocol"], r["method"]) for r in records} == {
        ("zero-shot", m) for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")}
    assert "| tiny |" in (out / "results.md").read_text()


def test_report_refuses_nan_scores_and_metrics(tmp_path):
    from deepfake_ssat.eval.report import results_table, roc_png, write_predictions_csv

    nan = float("nan")
    record = {"model": "m", "protocol": "zero-shot", "method": "Deepfakes",
              "metrics": {"clip": {"acc": 50.0}, "video": {"acc": nan, "auc": 0.5}}}
    with pytest.raises(ValueError, match=r"metric video\.acc = nan is not a finite number"):
        results_table([record])
    row = {"key": "ffpp/Deepfakes/c23/000_003", "dataset": "ffpp", "method": "Deepfakes", "compression": "c23",
           "video_id": "000_003", "label": 1, "prob": nan, "num_clips": 2}
    with pytest.raises(ValueError, match="video ffpp/Deepfakes/c23/000_003: score is nan"):
        write_predictions_csv(tmp_path / "pred.csv", [row])
    assert not (tmp_path / "pred.csv").exists()
    with pytest.raises(ValueError, match="NaN / inf scores"):
        roc_png({"Deepfakes": ([0, 1], [0.2, nan])}, tmp_path / "roc.png")
