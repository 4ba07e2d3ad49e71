"""tools/eval_ff.py (issue 5): zero-shot and a cross-manipulation fold on test-made FF++ crops."""
import csv
import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_env

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import fit
from deepfake_ssat.eval.cli import eval_ff_main


@pytest.fixture(scope="module")
def dfdc_checkpoint(face_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dfdc_run")
    cfg = load_config(ROOT / "configs/tiny/dfdc_videomae_095.yaml",
                      [f"data.root={face_data.dfdc}", "train.epochs=1", "data.batch_size=2"])
    fit(cfg, out)
    return out / "best.pt"


@pytest.mark.slow
def test_zero_shot_and_cross_fold_write_table_8(face_data, dfdc_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    code = eval_ff_main(["--zero-shot", "--leave-out", "NeuralTextures", "--checkpoint", str(dfdc_checkpoint),
                         "--data-root", str(face_data.ffpp), "--splits-dir", str(face_data.splits),
                         "--config", str(ROOT / "configs/tiny/ffpp_videomae_095.yaml"), "--name", "ssat",
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
                         str(ROOT / "configs/tiny/ffpp_videomae_scratch.yaml"), "--opts", "train.epochs=1",
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
