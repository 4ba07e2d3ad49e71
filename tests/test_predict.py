"""Single-video inference (tools/predict.py, ``deepfake_ssat.Detector``) and model export (tools/export.py)."""
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import ROOT, run_env
from skimage import data

from deepfake_ssat.config import config_to_dict, load_config
from deepfake_ssat.data.faceclips import FaceClipDataset, scan_extraction
from deepfake_ssat.engine.build import build_model
from deepfake_ssat.engine.checkpoint import load_checkpoint, save_checkpoint
from deepfake_ssat.commands.export import main as export_main
from deepfake_ssat.inference.export import export_model
from deepfake_ssat.faces.inputs import file_item
from deepfake_ssat.faces.detect import box_iou
from deepfake_ssat.faces.extract import ExtractionParams, extract_video
from deepfake_ssat.faces.sampling import SamplingPolicy
from deepfake_ssat.synthetic.scenes import MANIPULATIONS, FacePath, write_face_video
from deepfake_ssat.runtime import resolve_device
from deepfake_ssat.commands.predict import main as predict_main
from deepfake_ssat.inference import Detector

MOVING = FacePath(10, 5, 0.5, 80, 40, 0.6)  # 320x240, 40 frames
IMG, T, CROP = 32, 8, 48  # tiny model: 8 frames of 32 px; crops first resized to 48 px as an extraction would
OPTIONS = ["--min-face", "20", "--crop-size", str(CROP), "--device", "cpu", "--quiet"]
BAD = {  # name -> (status, words in the reason or None)
    "empty": ("unreadable", "empty file (0 bytes)"),
    "truncated": ("unreadable", "decord cannot open it"),
    "notes": ("unreadable", "decord cannot open it"),
    "tiny": ("no_face", "no face found in 3 sampled frames"),
    "noface": ("no_face", "no face found in 4 sampled frames"),
    "gray": ("ok", "room for 1 of 4 clips"),
    "portrait": ("ok", "room for 1 of 4 clips"),
    "short": ("ok", "1 of 1 clips padded by repeating their last face"),
    "absent": ("missing", "file not found"),
}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """An untrained tiny VideoMAE checkpoint (SSAT scratch: no decoder) as tools/train.py writes it."""
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    torch.manual_seed(0)
    model = build_model(cfg, 2)
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {"epoch": 0}})
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """``good/``: a real and a face-swapped moving face; ``bad/``: the bad inputs of the extraction tests."""
    root = tmp_path_factory.mktemp("videos")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    write_face_video(good / "real.mp4", 320, 240, 40, [MOVING])
    write_face_video(good / "swap.mp4", 320, 240, 20, [MOVING], manipulation=MANIPULATIONS["FaceSwap"])
    write_face_video(bad / "noface.mp4", 240, 180, 8, background=data.coffee())
    write_face_video(bad / "tiny.mp4", 25, 14, 5, [FacePath(0, 0, 0.05)])
    write_face_video(bad / "gray.mp4", 320, 240, 8, [FacePath(20, 10, 0.6)], gray=True)
    write_face_video(bad / "portrait.mp4", 1080, 1920, 3, [FacePath(100, 700, 1.6)])
    write_face_video(bad / "short.mp4", 320, 240, 5, [MOVING])
    (bad / "empty.mp4").write_bytes(b"")
    whole = (good / "real.mp4").read_bytes()
    (bad / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    (bad / "notes.mp4").write_text("these are my notes, not a video\n")
    (bad / "readme.txt").write_text("not a video suffix: ignored by folder discovery\n")
    return root


@pytest.fixture(scope="module")
def detector(ckpt) -> Detector:
    return Detector.from_checkpoint(ckpt, "cpu", min_face_size=20, crop_size=CROP)


@pytest.fixture(scope="module")
def bad_run(detector, videos, tmp_path_factory):
    """``predict_many`` over the bad folder plus a missing file, with annotation strips: (records, strip dir)."""
    strips = tmp_path_factory.mktemp("strips")
    records = detector.predict_many([videos / "bad", videos / "bad" / "absent.mp4"], annotate_dir=strips)
    return {Path(r["path"]).stem: r for r in records}, strips


def test_import_is_cheap_and_detector_is_lazy():
    code = "import sys, deepfake_ssat; assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], env=run_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    import deepfake_ssat

    assert deepfake_ssat.Detector is Detector
    with pytest.raises(AttributeError):
        deepfake_ssat.NoSuchThing  # noqa: B018


def test_good_video_matches_the_training_dataset_path(detector, videos, tmp_path, monkeypatch):
    """Same video through tools/extract_faces.py's code + FaceClipDataset (eval) -> the very same clip tensors."""
    captured = []
    score = detector.score_clips
    monkeypatch.setattr(detector, "score_clips", lambda clips: captured.append(clips) or score(clips))
    record = detector.predict_video(videos / "good/real.mp4")
    assert record["status"] == "ok" and record["reason"] is None and record["path"] == str(videos / "good/real.mp4")
    assert 0 <= record["fake_probability"] <= 1 and record["label"] in ("FAKE", "REAL")
    assert record["label"] == ("FAKE" if record["fake_probability"] >= 0.5 else "REAL")
    assert record["num_clips"] == len(record["per_clip"]) == 4
    assert record["fake_probability"] == pytest.approx(float(np.mean(record["per_clip"])), abs=1e-12)
    assert record["num_faces"] == len(record["frames"]) == len(record["boxes"]) == 24  # 4 overlapping clips
    for frame, box in zip(record["frames"], record["boxes"]):
        assert box_iou(np.array(box), MOVING.face_box(frame / 39))[0, 0] > 0.75
    assert record["annotation"] is None and record["seconds"] > 0

    item = file_item(videos / "good/real.mp4")
    lossless = replace(detector.params, store="png")  # PNG crops: the very same pixels the detector saw
    assert extract_video(item, tmp_path, lossless, detector.faces)["status"] == "ok"
    manifest_path = tmp_path / item.rel_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["label"] = 0  # an unlabelled folder video: label it so that the training dataset reads it
    manifest_path.write_text(json.dumps(manifest))
    found, _ = scan_extraction(tmp_path, T, 1, IMG)
    dataset = FaceClipDataset(found, IMG, T, frame_step=1, train=False, augment=False, eval_clips=4)
    clips = torch.stack([dataset[i][0] for i in range(len(dataset))])
    assert clips.shape == (4, 3, T, IMG, IMG) and torch.equal(captured[0], clips)
    assert record["frames"] == [c["frame"] for c in manifest["crops"]]
    with torch.inference_mode():
        probs = detector.encoder(clips).softmax(dim=1)[:, 1]
    np.testing.assert_allclose(record["per_clip"], probs.numpy(), rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tar_ckpt(ckpt, tmp_path_factory) -> Path:
    """The same model, its checkpoint recording (as tools/train.py does) that its training faces came from a tar
    store extracted with --size 48 --min-face 20 --crop-scale 1.4."""
    path = tmp_path_factory.mktemp("tar_ckpt") / "best.pt"
    state = load_checkpoint(ckpt)
    trained = ExtractionParams(SamplingPolicy(frames=16), min_face_size=20, crop_scale=1.4, crop_size=CROP)
    assert trained.store == "tar"  # the extraction default
    save_checkpoint(path, {"model": state["model"], "config": state["config"],
                           "meta": {"epoch": 0, "extraction": trained.to_dict()}})
    return path


def _detector_clips(detector: Detector, video: Path, monkeypatch) -> torch.Tensor:
    captured = []
    score = detector.score_clips
    monkeypatch.setattr(detector, "score_clips", lambda clips: captured.append(clips) or score(clips))
    assert detector.predict_video(video)["status"] == "ok"
    monkeypatch.undo()
    return torch.cat(captured)


def test_faces_are_cropped_as_the_training_store_was(tar_ckpt, videos, tmp_path, monkeypatch, capsys):
    """A checkpoint that records its training extraction: predict finds, crops and JPEG-encodes faces as that tar
    store did (no option needed), so its clips equal the training dataset's clips of the same video exactly."""
    detector = Detector.from_checkpoint(tar_ckpt, "cpu")
    p = detector.params
    assert (p.store, p.crop_scale, p.min_face_size, p.crop_size) == ("tar", 1.4, 20, CROP)
    clips = _detector_clips(detector, videos / "good/real.mp4", monkeypatch)
    item = file_item(videos / "good/real.mp4")
    assert extract_video(item, tmp_path, detector.params, detector.faces)["status"] == "ok"
    manifest_path = tmp_path / item.rel_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert manifest["container"] == "crops.tar"
    manifest_path.write_text(json.dumps({**manifest, "label": 0}))
    found, _ = scan_extraction(tmp_path, T, 1, IMG)
    dataset = FaceClipDataset(found, IMG, T, frame_step=1, train=False, augment=False, eval_clips=4)
    assert torch.equal(clips, torch.stack([dataset[i][0] for i in range(len(dataset))]))
    # lossless crops (--store-format png) are other pixels: the JPEG encoding is really applied
    lossless = Detector.from_checkpoint(tar_ckpt, "cpu", store="png")
    assert lossless.params.crop_scale == 1.4 and not torch.equal(
        _detector_clips(lossless, videos / "good/real.mp4", monkeypatch), clips)
    # an exported detector carries the same face settings
    capsys.readouterr()
    assert export_main(["--checkpoint", str(tar_ckpt), "--out", str(tmp_path / "share" / "d.safetensors")]) == 0
    shared = Detector.from_checkpoint(Path(json.loads(capsys.readouterr().out)["path"]), "cpu")
    assert shared.params == detector.params
    # the command line overrides one setting and keeps the others
    out = tmp_path / "p.json"
    assert predict_main([str(videos / "good/real.mp4"), "--checkpoint", str(tar_ckpt), "--device", "cpu", "--quiet",
                         "--store-format", "png", "--out", str(out)]) == 0
    record = json.loads(out.read_text())[0]
    expected = lossless.predict_video(videos / "good/real.mp4")["fake_probability"]
    assert record["fake_probability"] == pytest.approx(expected, abs=1e-7)


def test_a_bad_training_extraction_in_a_checkpoint_is_one_clear_error(ckpt, tmp_path):
    state = load_checkpoint(ckpt)
    path = tmp_path / "odd.pt"
    save_checkpoint(path, {"model": state["model"], "config": state["config"],
                           "meta": {"extraction": {"crop_scale": "big"}}})
    with pytest.raises(ValueError, match=r"odd.pt: extraction parameter crop_scale='big'"):
        Detector.from_checkpoint(path, "cpu")
    save_checkpoint(path, {"model": state["model"], "config": state["config"],
                           "meta": {"extraction": {"crop_size": torch.tensor(48)}}})  # loads weights-only, not JSON
    with pytest.raises(ValueError, match=r"odd.pt: its recorded extraction parameters are not a plain mapping"):
        Detector.from_checkpoint(path, "cpu")
    assert export_main(["--checkpoint", str(path), "--out", str(tmp_path / "d.safetensors")]) == 2


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_inputs_get_a_status_not_an_exception(bad_run, videos, name):
    records, strips = bad_run
    assert set(records) == set(BAD)  # readme.txt is not a video
    record = records[name]
    status, words = BAD[name]
    assert record["status"] == status and words in record["reason"] and "\n" not in record["reason"]
    if status == "ok":
        assert 0 <= record["fake_probability"] <= 1 and record["num_clips"] == 1 and record["num_faces"] >= 1
        assert record["label"] in ("FAKE", "REAL")
    else:
        assert record["fake_probability"] is None and record["label"] is None
        assert record["num_clips"] == record["num_faces"] == 0 and record["per_clip"] == []
        assert record["tracks"] == [] and record["decided_by"] is None
    if status in ("ok", "no_face"):  # decoded: a strip of frames (with the face box when there is one)
        strip = cv2.imread(record["annotation"])
        assert Path(record["annotation"]) == strips / f"{name}.png" and strip.shape[0] == 240
    else:
        assert record["annotation"] is None and not (strips / f"{name}.png").exists()


def test_cli_json_on_stdout_and_out_file(ckpt, videos, tmp_path, capsys):
    assert predict_main([str(videos / "good"), "--checkpoint", str(ckpt), *OPTIONS]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [Path(r["path"]).name for r in printed] == ["real.mp4", "swap.mp4"]
    assert all(r["status"] == "ok" and 0 <= r["fake_probability"] <= 1 for r in printed)
    assert {"path", "status", "reason", "fake_probability", "label", "num_faces", "num_clips", "per_clip",
            "frames", "boxes", "tracks", "decided_by", "seconds"} <= set(printed[0])
    for r in printed:  # one face: one scored track, and it decides
        assert [t["track"] for t in r["tracks"]] == [r["decided_by"]]
        assert r["tracks"][0]["fake_probability"] == r["fake_probability"] and r["tracks"][0]["per_clip"] == r["per_clip"]

    out = tmp_path / "sub" / "predictions.json"
    argv = [str(videos / "good/swap.mp4"), str(videos / "bad/notes.mp4"), "--checkpoint", str(ckpt), "--out",
            str(out), "--strategy", "confident", *OPTIONS]
    assert predict_main(argv) == 0
    assert capsys.readouterr().out == ""
    written = json.loads(out.read_text())
    assert [r["status"] for r in written] == ["ok", "unreadable"]
    assert written[0]["per_clip"] == pytest.approx(printed[1]["per_clip"], abs=1e-6)


def test_predict_tool_exit_codes(ckpt, videos, tmp_path, capsys):
    """The real script: exit 0 whatever the statuses; a missing or foreign checkpoint: exit 2, one line."""
    run = subprocess.run([sys.executable, str(ROOT / "tools/predict.py"), str(videos / "bad/empty.mp4"),
                          str(videos / "bad/notes.mp4"), "--checkpoint", str(ckpt), *OPTIONS],
                         env=run_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert [r["status"] for r in json.loads(run.stdout)] == ["unreadable", "unreadable"]

    foreign = tmp_path / "notes.pt"
    foreign.write_text("not a checkpoint\n")
    for path, words in ((tmp_path / "missing.pt", "checkpoint not found"), (foreign, "not a readable checkpoint")):
        assert predict_main([str(videos / "bad/empty.mp4"), "--checkpoint", str(path)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and err.count("\n") == 1 and err.startswith("error: ") and words in err, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_device_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "pt2"])
def test_exported_model_matches_pytorch(ckpt, detector, tmp_path, fmt):
    clip = torch.randn(1, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(1))  # traced on a batch of 2
    suffix = {"onnx": ".onnx", "torchscript": ".ts", "pt2": ".pt2"}[fmt]
    result = export_model(ckpt, tmp_path / f"model{suffix}", fmt, clip=clip)
    assert result["max_abs_diff"] < 1e-4 and result["checked_batch"] == 1
    assert result["input_shape"] == [-1, 3, T, IMG, IMG] and result["output_shape"] == [-1, 2]
    batch = torch.randn(3, 3, T, IMG, IMG, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        expected = detector.encoder(batch).numpy()
    if fmt == "onnx":  # reloaded on its own, as a deployment would
        import onnxruntime

        session = onnxruntime.InferenceSession(result["path"], providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"clips": batch.numpy()})[0]
    elif fmt == "torchscript":
        got = torch.jit.load(result["path"])(batch).detach().numpy()
    else:
        got = torch.export.load(result["path"]).module()(batch).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_export_cli(ckpt, tmp_path, capsys):
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "model.pt")]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["format"] == "torchscript" and line["max_abs_diff"] < 1e-4 and Path(line["path"]).is_file()
    assert export_main(["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
