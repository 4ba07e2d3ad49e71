"""Video training end to end (issue 4): every config family on a tiny DFDC extraction, exact resume,
SSL -> fine-tuning, and torchrun DDP (gloo, 2 CPU processes) against one process."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, requires_cxx, run_env

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import fit, load_checkpoint, load_inference_model

FAST = ["train.epochs=4", "data.loader.batch_size=2", "train.blr=1.0e-2", "train.warmup_epochs=0", "data.augment=false"]


def _cfg(name: str, face_data, *opts: str):
    return load_config(f"video/tiny/{name}", [f"data.root={face_data.dfdc}", *FAST, *opts])


def _history(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dfdc_videomae_095", "dfdc_videomae_075", "dfdc_videomae_scratch"])
def test_config_family_trains_and_loss_decreases(name, face_data, tmp_path):
    summary = fit(_cfg(name, face_data), tmp_path)
    rows = _history(tmp_path)
    assert len(rows) == 4 and summary["steps"] == 12
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert summary["test_acc1"] is not None and len(summary["data_manifest_sha256"]) == 64
    # DFDC is imbalanced: best.pt is chosen on video-level validation AUC, logged with log-loss and balanced ACC
    assert {"val_auc", "val_log_loss", "val_bal_acc", "val_video_acc"} <= rows[0].keys()
    best = rows[summary["best_epoch"] - 1]
    assert summary["selected_by"] == "auc" and summary["best_val_metric"] == pytest.approx(float(best["val_auc"]))
    assert max(float(r["val_auc"]) for r in rows) == pytest.approx(float(best["val_auc"]))
    assert {"acc", "auc", "log_loss", "eer"} <= summary["test_video"].keys() and summary["test_video"]["log_loss"] > 0
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)  # fine-tuning betas (MAE: 0.95)
    assert ckpt["meta"]["data_manifest_sha256"] == summary["data_manifest_sha256"]
    manifest = json.loads(next(face_data.dfdc.rglob("manifest.json")).read_text())
    assert ckpt["meta"]["extraction"] == manifest["params"]  # predict crops faces as these were
    assert any(k.startswith("decoder.") for k in ckpt["model"]) == (name != "dfdc_videomae_scratch")
    encoder, _ = load_inference_model(tmp_path / "best.pt")
    x, _, _ = __import__("deepfake_ssat.data", fromlist=["build_datasets"]).build_datasets(
        _cfg(name, face_data).data, 32, 3, 8)["test"][0]
    assert encoder(x[None]).shape == (1, 2)


@pytest.mark.slow
def test_ssl_then_finetune_chain(face_data, tmp_path):
    ssl = fit(_cfg("dfdc_videomae_ssl_095", face_data), tmp_path / "ssl")
    rows = _history(tmp_path / "ssl")
    assert ssl["best_val_acc1"] is None and rows[0]["val_acc1"] == ""  # lam = 0: no classifier trained
    assert ssl["selected_by"] == "rec"
    assert load_checkpoint(tmp_path / "ssl" / "last.pt")["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.95)
    assert float(rows[-1]["train_rec"]) < float(rows[0]["train_rec"])
    pre = load_checkpoint(tmp_path / "ssl" / "last.pt")["model"]
    cfg = _cfg("dfdc_videomae_ssl_095_ft", face_data, f"train.init_from={tmp_path / 'ssl' / 'last.pt'}",
               "train.epochs=1", "train.blr=1.0e-9")
    ft = fit(cfg, tmp_path / "ft")
    tuned = load_checkpoint(tmp_path / "ft" / "last.pt")["model"]
    assert not any(k.startswith("decoder.") for k in tuned)  # fine-tuning: classification only
    block = "encoder.blocks.0.attn.qkv.weight"
    assert torch.allclose(tuned[block], pre[block], atol=1e-5)  # started from the pre-trained encoder
    assert ft["test_acc1"] is not None


@pytest.mark.slow
def test_video_resume_is_exact(face_data, tmp_path):
    cfg = _cfg("dfdc_videomae_095", face_data, "train.epochs=2", "data.augment=true")
    fit(cfg, tmp_path / "full")
    assert fit(cfg, tmp_path / "cut", max_steps=4) == {"stopped_at_step": 4}
    fit(cfg, tmp_path / "cut", resume=tmp_path / "cut" / "last.pt")
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def _torchrun(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = run_env()
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "deepfake_ssat", "train", *args]  # as docs/training.md launches it (the image DDP test: the shim)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_torchrun_ddp_matches_one_process_and_resumes(face_data, tmp_path):
    """2 gloo processes x batch 2 == 1 process x batch 4 (scratch: no random masks, no dropout);
    a DDP run stopped after 2 updates and resumed under DDP ends where the uninterrupted one does."""
    name, common = "dfdc_videomae_scratch", [*FAST, "train.epochs=4", "data.augment=true", "data.loader.balanced=true",
                                             "ssat.label_smoothing=0.0"]
    single = load_config(f"video/tiny/{name}", [f"data.root={face_data.dfdc}", *common,
                                                                    "data.loader.batch_size=4"])
    torch.set_num_threads(1)
    try:
        fit(single, tmp_path / "one")
    finally:
        torch.set_num_threads(os.cpu_count() or 1)
    config = str(ROOT / "configs/video/tiny" / f"{name}.yaml")
    opts = ["--opts", f"data.root={face_data.dfdc}", *common, "data.loader.batch_size=2"]
    cut = _torchrun(["--config", config, "--out", str(tmp_path / "ddp"), "--max-steps", "2", *opts])
    assert cut.returncode == 0, cut.stderr[-2000:]
    resumed = _torchrun(["--resume", str(tmp_path / "ddp" / "last.pt")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    one = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["steps"] == one["steps"] == 4  # 6 train videos / global batch 4 = 1 update per epoch
    ckpt_ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    ckpt_one = load_checkpoint(tmp_path / "one" / "last.pt")
    assert ckpt_ddp["meta"]["world_size"] == 2 and len(ckpt_ddp["rng_per_rank"]) == 2
    for k, v in ckpt_one["model"].items():
        assert torch.allclose(ckpt_ddp["model"][k], v, atol=1e-5, rtol=1e-4), k
    assert summary["test_acc1"] == pytest.approx(one["test_acc1"])
    assert summary["best_val_acc1"] == pytest.approx(one["best_val_acc1"])


def test_torchrun_with_one_process_runs_the_ddp_path(face_data, tmp_path):
    """torchrun --nproc_per_node=1 joins a process group of one (gloo here, NCCL on a GPU) and trains under DDP."""
    env = run_env()
    env["OMP_NUM_THREADS"] = "1"
    config = str(ROOT / "configs/video/tiny/dfdc_videomae_scratch.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(ROOT / "tools" / "train.py"), "--config", config, "--out", str(tmp_path / "run"),
           "--opts", f"data.root={face_data.dfdc}", *FAST, "train.epochs=1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x 1 processes" in done.stdout
    assert json.loads(done.stdout.strip().splitlines()[-1])["world_size"] == 1


def test_uint8_transfer_trains_exactly_as_float(face_data, tmp_path):
    """data.loader.transfer=uint8 (the CUDA default): clips leave the loader as uint8 and are normalised on the device;
    the weights come out bit-identical to normalising in the loader, and with 2 loader worker processes (augmented
    clips drawn there, init_worker) bit-identical again."""
    from deepfake_ssat.data import build_face_clips
    from deepfake_ssat.data.transforms import normalize_clips

    as_float = build_face_clips("dfdc", face_data.dfdc, 32, 8, augment=False, only=("val",))["val"]
    as_uint8 = build_face_clips("dfdc", face_data.dfdc, 32, 8, augment=False, only=("val",), uint8=True)["val"]
    x8, x = as_uint8[0][0], as_float[0][0]
    assert x8.dtype == torch.uint8 and x8.permute(3, 0, 1, 2).shape == x.shape  # channels last: [T, S, S, 3]
    assert torch.equal(normalize_clips(x8[None])[0], x) and normalize_clips(x8[None]).is_contiguous()
    opts = ["train.epochs=1", "data.augment=true"]
    fit(_cfg("dfdc_videomae_095", face_data, *opts, "data.loader.transfer=float"), tmp_path / "float")
    fit(_cfg("dfdc_videomae_095", face_data, *opts, "data.loader.transfer=uint8"), tmp_path / "uint8")
    fit(_cfg("dfdc_videomae_095", face_data, *opts, "data.loader.transfer=uint8", "data.loader.num_workers=2"),
        tmp_path / "workers")
    a = load_checkpoint(tmp_path / "float" / "last.pt")["model"]
    for run in ("uint8", "workers"):
        b = load_checkpoint(tmp_path / run / "last.pt")["model"]
        assert all(torch.equal(a[k], b[k]) for k in a), run


@pytest.mark.slow
@requires_cxx
@pytest.mark.parametrize("name", ["dfdc_videomae_scratch", "dfdc_videomae_095", "dfdc_videomae_ssl_095"])
def test_compiled_training_equals_eager(name, face_data, tmp_path):
    """train.compile=true (torch.compile of the train step; inductor's C++ backend on CPUs) trains the weights eager
    training does, for each loss weighting: CE alone (scratch), joint (SSAT) and reconstruction alone (SSL). The
    first and last failed before ssat_loss stopped multiplying in a weight of 1: inductor folded the total into the
    detached part, so the compiled loss had no gradient. Inductor draws the masks with eager's generator here
    (``fallback_random``), so both runs see the same masks."""
    from torch._dynamo.utils import counters
    from torch._inductor import config as inductor_config

    opts = ["train.epochs=1", "train.save_every_steps=0"]
    fit(_cfg(name, face_data, *opts), tmp_path / "eager", max_steps=2)
    torch._dynamo.reset()
    counters.clear()
    with inductor_config.patch(fallback_random=True):
        fit(_cfg(name, face_data, *opts, "train.compile=true"), tmp_path / "compiled", max_steps=2)
    assert counters["stats"]["unique_graphs"] >= 1  # the step did run compiled
    eager, compiled = (load_checkpoint(tmp_path / run / "last.pt") for run in ("eager", "compiled"))
    assert eager["train_state"]["step"] == compiled["train_state"]["step"] == 2
    a, b = eager["model"], compiled["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k


@pytest.mark.slow
@requires_cxx
def test_compiled_ddp_step_wraps_ddp_and_trains_as_eager(face_data, tmp_path, monkeypatch):
    """Under torchrun with train.compile=true, torch.compile wraps the DDP module (so dynamo's DDPOptimizer splits
    the graph at DDP's gradient buckets and their all-reduce overlaps the backward pass), accumulation micro-steps
    still skip the all-reduce through it, and the weights are those of eager training (a gloo world of one here)."""
    import socket

    from torch._dynamo.utils import counters
    from torch.nn.parallel import DistributedDataParallel

    opts = ["train.epochs=1", "train.save_every_steps=0", "train.accum_steps=2", "data.loader.batch_size=1"]
    fit(_cfg("dfdc_videomae_scratch", face_data, *opts), tmp_path / "eager", max_steps=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    compiled, compile_ = [], torch.compile
    monkeypatch.setattr(torch, "compile", lambda module, **kw: compiled.append(module) or compile_(module, **kw))
    skipped = []
    no_sync = DistributedDataParallel.no_sync
    monkeypatch.setattr(DistributedDataParallel, "no_sync", lambda self: skipped.append(1) or no_sync(self))
    torch._dynamo.reset()
    counters.clear()
    fit(_cfg("dfdc_videomae_scratch", face_data, *opts, "train.compile=true"), tmp_path / "ddp", max_steps=2)
    assert [type(m) for m in compiled] == [DistributedDataParallel]
    assert counters["stats"]["unique_graphs"] >= 1 and len(skipped) == 4  # 2 updates x (forward, backward)
    eager, ddp = (load_checkpoint(tmp_path / run / "last.pt") for run in ("eager", "ddp"))
    assert ddp["meta"]["world_size"] == 1 and ddp["train_state"]["step"] == eager["train_state"]["step"] == 2
    for k, v in eager["model"].items():
        assert torch.allclose(ddp["model"][k], v, rtol=1e-4, atol=1e-5), k
