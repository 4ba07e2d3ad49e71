"""make demo (issue 5): the whole video pipeline in --quick mode, and its data builder's layout."""
import json

import pytest

from deepfake_ssat.commands.demo import main


@pytest.mark.slow
def test_quick_demo_runs_every_stage(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--quick"]) == 0
    out = capsys.readouterr().out
    assert "| VideoMAE (0.95) + SSAT |" in out and "fake probability" in out
    data = tmp_path / "data"
    assert json.loads((data / "dfdc" / "dfdc_train_part_0" / "metadata.json").read_text())["p0o0f0.mp4"] == {
        "label": "FAKE", "split": "train", "original": "p0o0.mp4"}
    for method in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures"):
        assert any((data / "ffpp" / "manipulated_sequences" / method / "c23" / "videos").glob("*_*.mp4"))
    assert {p.stem for p in (data / "ffpp" / "splits").glob("*.json")} == {"train", "val", "test"}
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["prediction"]["status"] == "ok" and 0 <= summary["prediction"]["fake_probability"] <= 1
    records = json.loads((tmp_path / "ffpp_eval" / "results.json").read_text())["records"]
    assert {(r["protocol"], r["method"]) for r in records} >= {("cross", "NeuralTextures"), ("zero-shot", "FaceSwap")}
    assert (tmp_path / "analysis" / "gradcam.png").is_file() and (tmp_path / "prediction.png").is_file()
