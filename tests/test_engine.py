import csv
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_env
from deepfake_ssat.commands.train import main as train_main
from deepfake_ssat.engine import (TrainingDiverged, fit, load_checkpoint, load_inference_model, save_checkpoint,
                                  strip_decoder)
from deepfake_ssat.engine.build import build_model
from deepfake_ssat.config import ConfigError
from deepfake_ssat.models import SSAT


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def _assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def test_fit_writes_run_directory(tiny_cfg, tmp_path):
    summary = fit(tiny_cfg("train.epochs=1"), tmp_path / "run")
    run = tmp_path / "run"
    for name in ("last.pt", "best.pt", "config.yaml", "metrics.csv", "summary.json"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir()), "no TensorBoard event file"
    assert not list(run.glob(".*.tmp")), "temp files left behind"
    saved = json.loads((run / "summary.json").read_text())
    assert saved == summary
    assert {"best_val_acc1", "test_acc1", "train_seconds", "steps"} <= saved.keys()
    assert saved["steps"] == 1257 // 64
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert len(rows) == 1 and float(rows[0]["val_acc1"]) == saved["best_val_acc1"]
    ckpt = load_checkpoint(run / "last.pt")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "train_state", "config", "meta"} <= ckpt.keys()
    assert ckpt["config"]["train"]["epochs"] == 1


@pytest.mark.parametrize("opts,stop", [
    ((), 5),  # mid-epoch
    (("train.accum_steps=2", "data.loader.num_workers=2"), 12),  # accumulation, workers, second epoch
])
def test_resume_is_bit_exact(tiny_cfg, tmp_path, opts, stop):
    cfg = tiny_cfg("train.epochs=2", *opts)
    fit(cfg, tmp_path / "whole")
    stopped = fit(cfg, tmp_path / "split", max_steps=stop)
    assert stopped == {"stopped_at_step": stop}
    assert load_checkpoint(tmp_path / "split/last.pt")["train_state"]["step"] == stop
    summary = fit(cfg, tmp_path / "split", resume=tmp_path / "split/last.pt")
    _assert_identical(_weights(tmp_path / "whole/last.pt"), _weights(tmp_path / "split/last.pt"))
    whole = json.loads((tmp_path / "whole/summary.json").read_text())
    assert summary["test_acc1"] == whole["test_acc1"] and summary["steps"] == whole["steps"]
    assert (tmp_path / "whole/metrics.csv").read_text().count("\n") == \
        (tmp_path / "split/metrics.csv").read_text().count("\n")


def test_checkpoint_written_before_data_was_grouped_resumes_exactly(tiny_cfg, tmp_path, capsys):
    """A last.pt whose stored config has the flat data keys (data.batch_size, ...) of before the grouping resumes
    through the CLI, silently, to the weights of an uninterrupted run."""
    cfg = tiny_cfg("train.epochs=2", "data.loader.batch_size=32")
    fit(cfg, tmp_path / "whole")
    fit(cfg, tmp_path / "split", max_steps=5)
    ckpt = load_checkpoint(tmp_path / "split/last.pt")
    data = ckpt["config"]["data"]
    for group in ("faces", "images", "loader"):
        data.update(data.pop(group))
    assert data["batch_size"] == 32
    save_checkpoint(tmp_path / "split/last.pt", ckpt)
    capsys.readouterr()
    assert train_main(["--resume", str(tmp_path / "split")]) == 0
    assert "[config]" not in capsys.readouterr().err
    _assert_identical(_weights(tmp_path / "whole/last.pt"), _weights(tmp_path / "split/last.pt"))
    assert load_checkpoint(tmp_path / "split/last.pt")["config"]["data"]["loader"]["batch_size"] == 32


def test_resume_with_new_learning_rate_uses_it(tiny_cfg, tmp_path):
    """Hyper-parameters overridden at resume act (e.g. a lower blr after a NaN stop)."""
    fit(tiny_cfg("train.blr=2e-3"), tmp_path / "run", max_steps=5)
    fit(tiny_cfg("train.blr=4e-3"), tmp_path / "run", resume=tmp_path / "run/last.pt", max_steps=6)
    fit(tiny_cfg("train.blr=4e-3"), tmp_path / "ref", max_steps=6)
    resumed = load_checkpoint(tmp_path / "run/last.pt")["optimizer"]["param_groups"]
    reference = load_checkpoint(tmp_path / "ref/last.pt")["optimizer"]["param_groups"]
    assert [g["lr"] for g in resumed] == [g["lr"] for g in reference]
    assert resumed[0]["initial_lr"] == 4e-3 * 64 / 256


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_exact(tiny_config_file, tmp_path):
    """A real kill -9 mid-run; resuming from whatever last.pt exists must end bit-identical."""
    train = [sys.executable, str(ROOT / "tools/train.py"), "--config", str(tiny_config_file),
             "--opts", "train.epochs=3", "train.save_every_steps=2"]
    ref = subprocess.run(train + ["--out", str(tmp_path / "ref")], env=run_env(), capture_output=True, text=True)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    proc = subprocess.Popen(train + ["--out", str(run)], env=run_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "run finished before it could be killed"
    assert not (run / "summary.json").exists()
    killed_at = load_checkpoint(run / "last.pt")["train_state"]["step"]
    assert 0 < killed_at < 3 * (1257 // 64)
    resumed = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), "--resume", str(run)],
                             env=run_env(), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at update {killed_at}" in resumed.stdout
    _assert_identical(_weights(tmp_path / "ref/last.pt"), _weights(run / "last.pt"))


def _poison_loss(monkeypatch, at_call: int):
    """Make the ``at_call``-th training loss NaN; returns the real ``SSAT.loss``."""
    real_loss = SSAT.loss
    calls = {"n": 0}

    def poisoned(self, out, x, labels):
        loss, parts = real_loss(self, out, x, labels)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] == at_call and self.training else (loss, parts)

    monkeypatch.setattr(SSAT, "loss", poisoned)
    return real_loss


def test_host_sync_log_trains_the_same_weights_and_logs(tiny_cfg, tmp_path):
    """train.host_sync=log (the CUDA default: the loss stays on the device between log steps) changes when the
    host reads the loss, not what is trained or logged."""
    step = fit(tiny_cfg("train.epochs=1", "train.host_sync=step"), tmp_path / "step")
    log = fit(tiny_cfg("train.epochs=1", "train.host_sync=log"), tmp_path / "log")
    _assert_identical(_weights(tmp_path / "step/last.pt"), _weights(tmp_path / "log/last.pt"))
    a, b = (list(csv.DictReader(open(tmp_path / run / "metrics.csv"))) for run in ("step", "log"))
    assert len(a) == len(b) == 1
    for key in ("train_loss", "train_cls", "train_rec", "val_loss", "val_acc1"):  # summed in another order
        assert float(a[0][key]) == pytest.approx(float(b[0][key]), rel=1e-9), key
    assert step["test_acc1"] == log["test_acc1"]


def test_host_sync_log_stops_at_the_next_read_without_saving(tiny_cfg, tmp_path, monkeypatch):
    _poison_loss(monkeypatch, at_call=7)
    cfg = tiny_cfg("train.epochs=1", "train.host_sync=log", "train.log_every_steps=5", "train.save_every_steps=5")
    with pytest.raises(TrainingDiverged) as e:
        fit(cfg, tmp_path / "run")
    msg = str(e.value)
    assert "between updates 5 and 10" in msg and "holds update 5" in msg and "nothing saved" in msg, msg
    assert "\n" not in msg
    assert load_checkpoint(tmp_path / "run/last.pt")["train_state"]["step"] == 5  # the NaN weights never saved


def test_host_sync_must_be_known(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="train.host_sync: must be one of auto, step, log"):
        fit(tiny_cfg("train.host_sync=sometimes"), tmp_path)


def test_nan_loss_stops_with_message_after_saving_state(tiny_cfg, tmp_path, monkeypatch):
    real_loss = _poison_loss(monkeypatch, at_call=4)
    cfg = tiny_cfg("train.epochs=1")
    with pytest.raises(TrainingDiverged) as e:
        fit(cfg, tmp_path / "run")
    msg = str(e.value)
    assert "loss is nan" in msg and "update 3" in msg and "last.pt" in msg and "\n" not in msg
    saved = load_checkpoint(tmp_path / "run/last.pt")
    assert saved["train_state"]["step"] == 3
    monkeypatch.setattr(SSAT, "loss", real_loss)
    summary = fit(cfg, tmp_path / "run", resume=tmp_path / "run/last.pt")  # resumable after the stop
    assert summary["steps"] == 1257 // 64


def test_real_divergence_through_cli_is_one_line(tiny_config_file, tmp_path):
    """An absurd learning rate really diverges: one line, exit 3, state saved and loadable."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/train.py"), "--config", str(tiny_config_file), "--out",
         str(tmp_path / "r"), "--opts", "train.epochs=1", "train.blr=1e30", "train.clip_grad=null",
         "train.warmup_epochs=0"],
        env=run_env(), capture_output=True, text=True)
    assert out.returncode == 3, out.stderr
    assert out.stderr.startswith("error: loss is nan") and out.stderr.count("\n") == 1
    update = int(re.search(r"update (\d+)", out.stderr).group(1))
    assert load_checkpoint(tmp_path / "r/last.pt")["train_state"]["step"] == update


def test_inference_loads_checkpoint_without_decoder(tiny_cfg, tmp_path):
    fit(tiny_cfg("train.epochs=1"), tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run/best.pt")
    full = build_model(tiny_cfg(), num_classes=10)
    full.load_state_dict(ckpt["model"])
    ckpt["model"] = strip_decoder(ckpt["model"])
    assert not any(k.startswith("decoder.") for k in ckpt["model"])
    for k in ("optimizer", "scheduler", "rng"):
        ckpt.pop(k)
    save_checkpoint(tmp_path / "encoder_only.pt", ckpt)  # a new digest for the stripped weights
    encoder, cfg = load_inference_model(tmp_path / "encoder_only.pt")
    x = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(encoder(x), full.eval().predict(x))
    assert cfg.data.name == "digits"


def test_cli_config_errors_are_one_line(tmp_path, tiny_config_file, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(tiny_config_file.read_text().replace("epochs: 2", "epoch: 2"))
    garbage = tmp_path / "truncated.pt"
    garbage.write_bytes(b"PK\x03\x04 not really a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    cases = [
        (["--config", str(bad)], "train.epoch: unknown key"),
        (["--config", str(tiny_config_file), "--opts", "model.num_frames=8"], "model.num_frames: not an argument"),
        (["--config", str(tiny_config_file), "--opts", "model.name=vit_huge"], "unknown model 'vit_huge'"),
        (["--resume", str(tmp_path / "missing")], "checkpoint not found"),
        (["--resume", str(garbage)], "not a readable checkpoint"),
        (["--resume", str(foreign)], "not a deepfake_ssat training checkpoint"),
        (["--config", str(tiny_config_file), "--opts", "data.root=/no/such/dir"], "data.root: /no/such/dir"),
        (["--config", str(tiny_config_file), "--opts", "train.blr=.nan"], "train.blr: must be a positive"),
    ]
    for args, want in cases:  # in-process: the same main() that tools/train.py calls
        assert train_main([*args, "--out", str(tmp_path / "o")]) == 2, args
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and want in err, err
    # and once through the real script
    out = subprocess.run([sys.executable, str(ROOT / "tools/train.py"), *cases[0][0]], env=run_env(),
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr


def test_digits_training_beats_chance(tiny_cfg, tmp_path):
    """A short SSAT run of the tiny ViT (no augmentation, so 10 epochs suffice) learns the digits."""
    cfg = tiny_cfg("train.epochs=10", "train.blr=1e-2", "data.loader.batch_size=32", "data.augment=false",
                   "train.warmup_epochs=1")
    summary = fit(cfg, tmp_path / "run")
    assert summary["test_acc1"] > 50.0  # chance is 10%


def test_digits_demo_runs_both_modes(tmp_path):
    from deepfake_ssat.commands.demo_digits import format_table, run_digits_demo
    rows = run_digits_demo(tmp_path, epochs=1)
    assert [r["mode"] for r in rows] == ["scratch", "SSAT"]
    assert (tmp_path / "results.json").is_file()
    scratch = load_checkpoint(tmp_path / "digits_vit_tiny_scratch/last.pt")["model"]
    ssat = load_checkpoint(tmp_path / "digits_vit_tiny_ssat/last.pt")["model"]
    assert not any(k.startswith("decoder.") for k in scratch) and any(k.startswith("decoder.") for k in ssat)
    table = format_table(rows)
    assert "| scratch" in table and "| SSAT" in table


def test_prefetch_factor_needs_workers(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"data.loader.prefetch_factor: 4 needs data.loader.num_workers > 0"):
        fit(tiny_cfg("data.loader.prefetch_factor=4"), tmp_path)


def test_tests_without_the_cuda_marker_run_on_the_cpu():
    """conftest's ``cpu_unless_marked_cuda``: on a GPU machine too, an ``auto`` device is the CPU in a test not marked
    ``cuda``, and the tools it starts see no GPU."""
    from deepfake_ssat.runtime import resolve_device

    assert not torch.cuda.is_available() and resolve_device("auto") == torch.device("cpu")
    assert run_env()["CUDA_VISIBLE_DEVICES"] == ""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"], env=run_env(),
                           capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "False", probe.stderr[-500:]
