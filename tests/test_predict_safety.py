"""tools/predict.py in a user's hands: no NaN verdicts, outputs checked before any work, Ctrl-C keeps what finished."""
import json
from pathlib import Path

import pytest
import torch

from test_predict import CROP, MOVING, OPTIONS

from deepfake_ssat.config import config_to_dict, load_config
from deepfake_ssat.engine.build import build_model
from deepfake_ssat.engine.checkpoint import save_checkpoint
from deepfake_ssat.synthetic.scenes import write_face_video
from deepfake_ssat.commands.predict import main as predict_main
from deepfake_ssat.inference import Detector, NonFiniteOutput


def strict_json(text: str):
    """``json.loads`` that fails the test on a ``NaN`` / ``Infinity`` token (JSON has no such numbers)."""
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token} in {text!r}"))


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _checkpoint(path: Path, nan: bool = False) -> Path:
    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    torch.manual_seed(0)
    model = build_model(cfg, 2)
    if nan:  # a corrupted weight: every clip's logits become NaN
        with torch.no_grad():
            model.encoder.head.bias[0] = float("nan")
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {"epoch": 0}})
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpts")
    return {"good": _checkpoint(root / "best.pt"), "nan": _checkpoint(root / "nan.pt", nan=True)}


@pytest.fixture(scope="module")
def clips_dir(tmp_path_factory) -> Path:
    """Two short videos of a moving face (4 clips of 8 frames each fit in 20 frames)."""
    root = tmp_path_factory.mktemp("clips")
    for name in ("a", "b"):
        write_face_video(root / f"{name}.mp4", 320, 240, 20, [MOVING])
    return root


def test_nan_weights_give_an_error_status_never_a_verdict(ckpts, clips_dir, capsys):
    assert predict_main([str(clips_dir / "a.mp4"), "--checkpoint", str(ckpts["nan"]), *OPTIONS]) == 0
    out, err = capsys.readouterr()
    [record] = strict_json(out)
    assert record["status"] == "error", record
    assert record["reason"] == ("model output is not finite (NaN) for 4 of 4 clips; "
                                "the checkpoint's weights may be corrupted")
    assert record["fake_probability"] is None and record["label"] is None and record["per_clip"] == []
    assert err == ""


def test_score_clips_counts_nan_and_inf_clips(ckpts, monkeypatch):
    detector = Detector.from_checkpoint(ckpts["good"], "cpu", min_face_size=20, crop_size=CROP)

    def broken(batch):  # clip 1 NaN, clip 2 inf, the others fine
        logits = torch.zeros(len(batch), 2)
        logits[1, 0], logits[2, 1] = float("nan"), float("inf")
        return logits

    monkeypatch.setattr(detector, "encoder", broken)
    words = r"^model output is not finite \(NaN and inf\) for 2 of 4 clips; the checkpoint's weights may be"
    with pytest.raises(NonFiniteOutput, match=words):
        detector.score_clips(torch.zeros(4, 3, 8, 32, 32))


def test_unwritable_outputs_are_refused_before_any_work(ckpts, clips_dir, tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        pytest.fail("the checkpoint was loaded before --out / --annotate were checked")

    monkeypatch.setattr(Detector, "from_checkpoint", no_work)
    folder, file = tmp_path / "folder", tmp_path / "file.txt"
    folder.mkdir()
    file.write_text("keep me\n")
    video = str(clips_dir / "a.mp4")
    cases = {  # extra argv -> words of the error
        ("--out", str(folder)): "is an existing folder",
        ("--out", str(file / "preds.json")): f"{file} is a file, not a folder",
        ("--out", str(file / "sub" / "preds.json")): f"{file} is a file, not a folder",
        ("--out", video): "is one of the input videos",
        ("--annotate", str(file)): "is an existing file",
        ("--annotate", str(file / "strips")): f"{file} is a file, not a folder",
    }
    for extra, words in cases.items():
        assert predict_main([video, "--checkpoint", str(ckpts["good"]), *extra, *OPTIONS]) == 2, extra
        out, err = capsys.readouterr()
        line = one_line(err)
        assert out == "" and line.startswith(f"error: {extra[0]} ") and words in line, (extra, err)
    assert file.read_text() == "keep me\n" and (clips_dir / "a.mp4").stat().st_size > 1000


def _interrupt_second_video(monkeypatch, first=None):
    """Detector.predict_video: the first video predicted (really, or ``first`` returned), Ctrl-C on the second."""
    real, calls = Detector.predict_video, []

    def predict_video(self, path, annotate=None):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return dict(first, path=str(path)) if first is not None else real(self, path, annotate)

    monkeypatch.setattr(Detector, "predict_video", predict_video)


def _run(argv):
    try:
        return predict_main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped predict_main (the user sees a traceback)")


def test_ctrl_c_writes_the_finished_records_to_out(ckpts, clips_dir, tmp_path, capsys, monkeypatch):
    _interrupt_second_video(monkeypatch)
    out = tmp_path / "preds.json"
    argv = [str(clips_dir), "--checkpoint", str(ckpts["good"]), "--out", str(out), *OPTIONS]
    assert _run(argv) == 130
    printed, err = capsys.readouterr()
    line = one_line(err)
    assert printed == "" and line.startswith("interrupted: 1 of 2 videos predicted, written to ")
    assert str(out) in line and line.endswith("continue with: dfssat-predict " + " ".join(argv))
    [record] = strict_json(out.read_text())
    assert record["path"] == str(clips_dir / "a.mp4") and record["status"] == "ok"
    assert 0 <= record["fake_probability"] <= 1


def test_ctrl_c_without_out_prints_the_finished_records(ckpts, clips_dir, capsys, monkeypatch):
    _interrupt_second_video(monkeypatch, first={"status": "no_face", "reason": "r", "fake_probability": None})
    assert _run([str(clips_dir), "--checkpoint", str(ckpts["good"]), *OPTIONS]) == 130
    printed, err = capsys.readouterr()
    assert [r["path"] for r in strict_json(printed)] == [str(clips_dir / "a.mp4")]
    assert one_line(err).startswith("interrupted: 1 of 2 videos predicted, printed on stdout")


def test_ctrl_c_while_loading_writes_nothing(ckpts, clips_dir, tmp_path, capsys, monkeypatch):
    def loading(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Detector, "from_checkpoint", loading)
    out = tmp_path / "preds.json"
    assert _run([str(clips_dir), "--checkpoint", str(ckpts["good"]), "--out", str(out), *OPTIONS]) == 130
    printed, err = capsys.readouterr()
    assert printed == "" and "nothing written" in one_line(err) and not out.exists()
