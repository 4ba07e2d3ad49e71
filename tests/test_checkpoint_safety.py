"""Checkpoints from strangers: nothing is unpickled beyond plain data, digests catch damaged weights,
safetensors detectors round-trip, and training-option / run-folder errors are one line."""
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT

from deepfake_ssat.commands.train import main as train_main
from deepfake_ssat.config import config_to_dict, load_config
from deepfake_ssat.engine import fit, load_checkpoint, save_checkpoint
from deepfake_ssat.engine.build import build_model
from deepfake_ssat.engine.checkpoint import CheckpointError, capture_rng, restore_rng
from deepfake_ssat.engine.pretrained import load_pretrained
from deepfake_ssat.engine.weights import read_detector
from deepfake_ssat.commands.eval_ff import main as eval_ff_main
from deepfake_ssat.commands.export import main as export_main
from deepfake_ssat.inference import Detector
from deepfake_ssat.commands.analyze import main as analyze_main
from deepfake_ssat.commands.predict import main as predict_main

TINY_VIDEO = ROOT / "configs/video/tiny/dfdc_videomae_scratch.yaml"


class Payload:
    """Unpickling this creates ``marker``: the kind of code a crafted checkpoint can run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def tiny_video_checkpoint(path: Path, seed: int = 0) -> Path:
    cfg = load_config(TINY_VIDEO)
    torch.manual_seed(seed)
    model = build_model(cfg, 2)
    save_checkpoint(path, {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {"epoch": 0}})
    return path


@pytest.fixture
def evil(tmp_path):
    """A checkpoint-shaped file (own format) and an official-looking .pth, both with a pickle payload."""
    marker = tmp_path / "pwned"
    good = load_checkpoint(tiny_video_checkpoint(tmp_path / "good.pt"))
    own = tmp_path / "evil.pt"
    torch.save({**good, "train_state": {"step": 0}, "meta": Payload(marker)}, own)
    official = tmp_path / "evil.pth"
    torch.save({"model": {k.removeprefix("encoder."): v for k, v in good["model"].items()}, "args": Payload(marker)},
               official)
    return own, official, marker


def test_payload_would_run_if_unpickled(evil, tmp_path):
    """The fixture is a real threat: full unpickling creates the marker file."""
    own, _, marker = evil
    torch.load(own, weights_only=False)
    assert marker.exists()


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_every_entry_point_refuses_a_malicious_checkpoint(evil, tmp_path, tiny_config_file, face_data, capsys):
    own, official, marker = evil
    out = tmp_path / "out"
    calls = {
        "predict": lambda: predict_main([str(tmp_path / "v.mp4"), "--checkpoint", str(own), "--device", "cpu"]),
        "analyze": lambda: analyze_main(["--checkpoint", str(own), "--device", "cpu", "--out", str(out / "a")]),
        "eval_ff zero-shot": lambda: eval_ff_main(["--zero-shot", "--checkpoint", str(own), "--data-root",
                                                   str(tmp_path), "--device", "cpu", "--out", str(out / "z")]),
        "eval_ff fold": lambda: eval_ff_main(["--leave-out", "Deepfakes", "--checkpoint", str(own), "--data-root",
                                              str(face_data.ffpp), "--splits-dir", str(face_data.splits),
                                              "--device", "cpu", "--out", str(out / "f")]),
        "export": lambda: export_main(["--checkpoint", str(own), "--out", str(out / "m.pt2")]),
        "train --resume": lambda: train_main(["--resume", str(own), "--out", str(out / "r")]),
        "train.init_from own": lambda: train_main(["--config", str(tiny_config_file), "--opts",
                                                   f"train.init_from={own}", "--out", str(out / "i1")]),
        "train.init_from .pth": lambda: train_main(["--config", str(tiny_config_file), "--opts",
                                                    f"train.init_from={official}", "--out", str(out / "i2")]),
    }
    for name, call in calls.items():
        assert call() == 2, name
        line = one_error_line(capsys)
        assert "refused" in line and "could run code" in line, (name, line)
        assert not marker.exists(), name


def test_our_checkpoints_load_with_plain_weights_only(tmp_path, tiny_cfg):
    fit(tiny_cfg("train.epochs=1"), tmp_path / "run", max_steps=2)
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)  # no allow-list needed
    assert {"model", "optimizer", "rng", "train_state", "config", "model_sha256"} <= ckpt.keys()
    np.random.seed(3)
    state = capture_rng()
    expected = np.random.rand(3)
    np.random.seed(99)
    restore_rng(state)
    np.testing.assert_array_equal(np.random.rand(3), expected)


def test_a_gpu_runs_rng_state_is_its_own_devices(monkeypatch):
    """A run on cuda:1 saves and restores cuda:1's generator only (not every visible GPU's: a resume may see fewer);
    an older checkpoint's list (one state per GPU visible then) gives this device's entry, or none if it is too short.
    The GPU generator calls are stood in for here (no GPU); tests/test_cuda.py runs them for real."""
    saved, restored = {1: torch.tensor([7], dtype=torch.uint8)}, []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: saved[device.index])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state.item(), device)))
    gpu = torch.device("cuda", 1)
    state = capture_rng(gpu)
    assert state["cuda"].item() == 7 and "cuda" not in capture_rng(torch.device("cpu")) and "cuda" not in capture_rng()
    restore_rng(state, gpu)
    restore_rng({**state, "cuda": [torch.tensor([n], dtype=torch.uint8) for n in range(8)]}, gpu)  # older list
    restore_rng({**state, "cuda": [torch.tensor([0], dtype=torch.uint8)]}, gpu)  # saved where cuda:1 did not exist
    restore_rng(state, torch.device("cpu"))  # a GPU run resumed on a CPU
    assert restored == [(7, gpu), (1, gpu)]


def test_a_checkpoint_that_is_not_a_dict_is_one_line(tmp_path, capsys):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    assert predict_main([str(tmp_path / "v.mp4"), "--checkpoint", str(path), "--device", "cpu"]) == 2
    assert "holds a list, not a checkpoint dict" in one_error_line(capsys)


def test_edited_weights_fail_the_digest(tmp_path, capsys):
    path = tiny_video_checkpoint(tmp_path / "best.pt")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["encoder.head.weight"][0, 0] += 1e-3
    torch.save(ckpt, path)  # saved with torch.save: the stored digest is the old one
    with pytest.raises(CheckpointError, match="do not match the checkpoint's sha256"):
        load_checkpoint(path)
    assert predict_main([str(tmp_path / "v.mp4"), "--checkpoint", str(path), "--device", "cpu"]) == 2
    assert "sha256" in one_error_line(capsys)


def _flip_tensor_byte(path: Path, zip_member_suffix: str) -> None:
    """Flip one byte in the middle of the largest stored tensor of a torch zip checkpoint."""
    with zipfile.ZipFile(path) as z:
        info = max((i for i in z.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    name_len = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_bit_flipped_checkpoint_never_gives_a_prediction(tmp_path, capsys):
    path = tiny_video_checkpoint(tmp_path / "best.pt")
    _flip_tensor_byte(path, "data")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert predict_main([str(tmp_path / "v.mp4"), "--checkpoint", str(path), "--device", "cpu"]) == 2
    one_error_line(capsys)


def test_safetensors_detector_round_trip_and_tamper(tmp_path, capsys):
    ckpt = tiny_video_checkpoint(tmp_path / "best.pt", seed=4)
    assert export_main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "share" / "detector.safetensors")]) == 0
    result = json.loads(capsys.readouterr().out)
    weights, sidecar = Path(result["path"]), Path(result["config"])
    assert result["format"] == "safetensors" and result["max_abs_diff"] < 1e-6
    meta = json.loads(sidecar.read_text())
    assert meta["preprocessing"]["num_frames"] == 8 and "root" not in meta["config"]["data"]
    from_pt = Detector.from_checkpoint(ckpt, "cpu")
    from_st = Detector.from_checkpoint(weights, "cpu")
    clips = torch.randn(3, 3, from_pt.num_frames, from_pt.img_size, from_pt.img_size)
    np.testing.assert_array_equal(from_pt.score_clips(clips), from_st.score_clips(clips))
    # train.init_from reads it too: the encoder gets exactly those weights
    cfg = load_config(TINY_VIDEO)
    encoder = build_model(cfg, 2).encoder
    assert load_pretrained(encoder, weights)["format"] == "deepfake_ssat"
    torch.testing.assert_close(encoder.head.weight, from_pt.encoder.head.weight, rtol=0, atol=0)
    # one flipped bit in the weights: refused, never a prediction
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0x01
    weights.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="sha256"):
        read_detector(weights)
    assert predict_main([str(tmp_path / "v.mp4"), "--checkpoint", str(weights), "--device", "cpu"]) == 2
    assert "sha256" in one_error_line(capsys)
    # a description pointing outside its folder is refused
    sidecar.write_text(json.dumps({**meta, "weights": "../best.pt"}))
    with pytest.raises(CheckpointError, match="must be a file name beside it"):
        read_detector(sidecar)


@pytest.mark.parametrize("opt, words", [
    ("ssat.mask_ratio=0", "masks no token"),
    ("ssat.mask_ratio=0.01", "masks no token"),
    ("train.clip_grad=-1", "train.clip_grad"),
    ("train.warmup_epochs=-1", "train.warmup_epochs"),
    ("ssat.label_smoothing=1.0", "ssat.label_smoothing"),
    ("ssat.label_smoothing=-0.1", "ssat.label_smoothing"),
])
def test_bad_training_options_are_one_line(opt, words, tmp_path, capsys):
    config = ROOT / "configs/video/tiny/dfdc_videomae_095.yaml"  # 2x4x4 tubelet grid: 0.01 masks none of 16
    assert train_main(["--config", str(config), "--opts", opt, "--out", str(tmp_path / "run")]) == 2
    assert words in one_error_line(capsys)


def test_resume_with_another_config_conflicts(tmp_path, tiny_config_file, capsys):
    assert train_main(["--config", str(tiny_config_file), "--max-steps", "1", "--out", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    other = tmp_path / "other.yaml"
    other.write_text(tiny_config_file.read_text().replace("embed_dim: 32", "embed_dim: 64"))
    assert train_main(["--resume", str(tmp_path / "run"), "--config", str(other)]) == 2
    line = one_error_line(capsys)
    assert "conflicts with --resume" in line and "decoder.embed_dim" in line
    # the same config (with the same overrides) is no conflict
    assert train_main(["--resume", str(tmp_path / "run"), "--config", str(tiny_config_file), "--max-steps", "2"]) == 0


def test_resume_into_a_new_folder_finishes_with_the_old_best(tmp_path, tiny_config_file, capsys):
    """Validation cannot improve after the resume (blr ~ 0 in epoch 2), so best.pt is the old run's."""
    first = tmp_path / "first"
    assert train_main(["--config", str(tiny_config_file), "--opts", "train.epochs=1", "data.loader.batch_size=256",
                       "--out", str(first)]) == 0
    capsys.readouterr()
    best_before = torch.load(first / "best.pt", weights_only=True)["model_sha256"]
    second = tmp_path / "second"
    assert train_main(["--resume", str(first), "--out", str(second), "--opts", "train.epochs=2", "train.blr=1e-12",
                       "train.min_lr=0"]) == 0
    summary = json.loads((second / "summary.json").read_text())
    assert summary["test_acc1"] is not None and summary["tested_weights"] == "best"
    assert (second / "best.pt").is_file()
    assert torch.load(first / "best.pt", weights_only=True)["model_sha256"] == best_before


def test_ctrl_c_in_training_saves_the_last_update_and_says_how_to_continue(tmp_path, tiny_config_file, capsys,
                                                                          monkeypatch):
    from deepfake_ssat.models import SSAT

    calls = {"n": 0}
    forward = SSAT.forward

    def interrupt_on_fourth(self, x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return forward(self, x)

    monkeypatch.setattr(SSAT, "forward", interrupt_on_fourth)
    run = tmp_path / "run"
    assert train_main(["--config", str(tiny_config_file), "--out", str(run)]) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("interrupted:"), err
    assert "holds update 3 of" in err[0] and f"--resume {run}" in err[0]
    assert load_checkpoint(run / "last.pt")["train_state"]["step"] == 3
