"""Issue 29: outputs that would destroy a training run or an input are refused (one error line, exit 2)."""
import pytest

from deepfake_ssat.commands.export import main as export_main
from deepfake_ssat.commands.predict import main as predict_main


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("best.pt", "last.pt", "config.yaml"):
        (run / name).write_bytes(b"precious " + name.encode())
    return run


@pytest.mark.parametrize("out", ["best.pt", "last.pt", "other.pt"])
def test_export_refuses_to_overwrite_the_checkpoint_or_its_run(run_dir, out, capsys):
    assert export_main(["--checkpoint", str(run_dir / "best.pt"), "--out", str(run_dir / out)]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith("error: --out ") and "refusing to overwrite" in err[0], err
    assert (run_dir / "best.pt").read_bytes() == b"precious best.pt"
    assert (run_dir / "last.pt").read_bytes() == b"precious last.pt"
    assert out != "other.pt" or not (run_dir / out).exists()


@pytest.mark.parametrize("out", ["best.pt", "last.pt", "config.yaml", "summary.json"])
def test_predict_refuses_to_overwrite_the_checkpoint_or_its_run(run_dir, tmp_path, out, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    assert predict_main([str(video), "--checkpoint", str(run_dir / "best.pt"), "--out", str(run_dir / out)]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith("error: --out ") and "refusing to overwrite" in err[0], err
    assert (run_dir / "best.pt").read_bytes() == b"precious best.pt"
    assert (run_dir / "config.yaml").read_bytes() == b"precious config.yaml"
    assert out != "summary.json" or not (run_dir / out).exists()


def test_predict_refuses_to_overwrite_an_input_video(run_dir, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    assert predict_main([str(video), "--checkpoint", str(run_dir / "best.pt"), "--out", str(video)]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and "is one of the input videos" in err[0], err
    assert video.read_bytes() == b"not really a video"


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_extract_faces_refuses_a_non_finite_crop_scale(tmp_path, value, capsys):
    from deepfake_ssat.commands.extract_faces import main as extract_main

    with pytest.raises(SystemExit) as e:
        extract_main([str(tmp_path), "--out", str(tmp_path / "faces"), "--crop-scale", value])
    err = error_lines(capsys)
    assert e.value.code == 2 and len(err) == 1 and "--crop-scale" in err[0] and "dfssat-extract-faces" in err[0], err
    assert not (tmp_path / "faces").exists()


@pytest.mark.parametrize("value", ["0", "-3"])
def test_predict_refuses_a_crop_size_below_one(run_dir, tmp_path, value, capsys):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"not really a video")
    with pytest.raises(SystemExit) as e:
        predict_main([str(video), "--checkpoint", str(run_dir / "best.pt"), "--crop-size", value])
    err = error_lines(capsys)
    assert e.value.code == 2 and len(err) == 1 and "--crop-size" in err[0] and "must be >= 1" in err[0], err


def test_analyze_refuses_nan_weights(tmp_path, capsys):
    import torch

    from deepfake_ssat.commands.analyze import main as analyze_main
    from deepfake_ssat.config import config_to_dict, load_config
    from deepfake_ssat.engine import save_checkpoint
    from deepfake_ssat.engine.build import build_model

    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    model = build_model(cfg, 2)
    with torch.no_grad():
        model.encoder.head.bias[0] = float("nan")
    ckpt = tmp_path / "run" / "nan.pt"
    ckpt.parent.mkdir()
    save_checkpoint(ckpt, {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {"epoch": 0}})
    assert analyze_main(["--checkpoint", str(ckpt), "--device", "cpu"]) == 2
    err = error_lines(capsys)
    assert len(err) == 1 and err[0].startswith("error: ") and "NaN / inf" in err[0], err
    assert not (tmp_path / "run" / "analysis").exists()
