"""CUDA paths (issue 14): run when a GPU is visible, skipped without one (the CPU paths are tested elsewhere).

bf16 autocast training of image and video models (finite losses, resume exact up to bf16), the face detector,
extraction and predict on CUDA against the CPU, torchrun on NCCL with one process, and torch.compile against eager.
"""
import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, run_env

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import fit, load_checkpoint

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

FAST = ["train.epochs=2", "data.loader.batch_size=2", "train.blr=1.0e-2", "train.warmup_epochs=0", "train.device=cuda",
        "train.amp=bf16"]


def _video(face_data, name: str = "dfdc_videomae_095", *opts: str):
    return load_config(f"video/tiny/{name}", [f"data.root={face_data.dfdc}", *FAST, *opts])


@pytest.mark.parametrize("kind", ["image", "video"])
def test_bf16_training_is_finite_and_resumes(kind, face_data, tiny_cfg, tmp_path):
    cfg = _video(face_data) if kind == "video" else tiny_cfg("train.device=cuda", "train.amp=bf16", "train.epochs=2")
    full = fit(cfg, tmp_path / "full")
    assert full["test_acc1"] is not None and np.isfinite(full["test_acc1"])
    rows = (tmp_path / "full" / "metrics.csv").read_text().splitlines()[1:]
    assert rows and all("nan" not in r and "inf" not in r for r in rows)
    cut = full["steps"] // 2
    assert fit(cfg, tmp_path / "cut", max_steps=cut) == {"stopped_at_step": cut}
    fit(cfg, tmp_path / "cut", resume=tmp_path / "cut" / "last.pt")
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "last.pt")["model"]
    for k in a:  # exact up to bf16 kernels' run-to-run differences
        assert torch.allclose(a[k].float(), b[k].float(), atol=2e-2, rtol=2e-2), k


def test_detector_on_cuda_matches_cpu_boxes():
    from deepfake_ssat.faces.detect import FaceDetector
    from deepfake_ssat.synthetic.scenes import astronaut

    frames = [np.ascontiguousarray(astronaut()[::-1] if i % 2 else astronaut()) for i in range(4)]
    cpu = FaceDetector(device="cpu").detect(frames)
    gpu = FaceDetector(device="cuda").detect(frames)
    for c, g in zip(cpu, gpu):
        assert len(c.boxes) == len(g.boxes) >= 1
        assert np.abs(np.asarray(c.boxes) - np.asarray(g.boxes)).max() < 2.0  # pixels


def test_predict_on_cuda_matches_cpu(tmp_path):
    """tools/predict.py's Detector on CUDA (MTCNN and the model, bf16 autocast) vs the CPU on one real-face video."""
    from deepfake_ssat.config import config_to_dict
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.checkpoint import save_checkpoint
    from deepfake_ssat.synthetic.scenes import FacePath, write_face_video
    from deepfake_ssat.inference import Detector

    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    torch.manual_seed(0)
    ckpt = tmp_path / "best.pt"
    save_checkpoint(ckpt, {"model": build_model(cfg, 2).state_dict(), "config": config_to_dict(cfg), "meta": {}})
    video = tmp_path / "face.mp4"
    write_face_video(video, 320, 240, 40, [FacePath(10, 5, 0.5, 80, 40, 0.6)])
    cpu, gpu = (Detector.from_checkpoint(ckpt, device, min_face_size=20, crop_size=48).predict_video(video)
                for device in ("cpu", "cuda"))
    assert cpu["status"] == gpu["status"] == "ok" and cpu["frames"] == gpu["frames"]
    assert np.abs(np.asarray(cpu["boxes"]) - np.asarray(gpu["boxes"])).max() < 2.0  # pixels
    np.testing.assert_allclose(gpu["per_clip"], cpu["per_clip"], rtol=0, atol=0.03)  # bf16 on the GPU


def test_extraction_on_cuda_matches_cpu(tmp_path):
    from deepfake_ssat.commands.extract_faces import main as extract
    from deepfake_ssat.synthetic.layouts import write_dfdc

    write_dfdc(tmp_path / "videos", num_parts=1, originals_per_part=1, fakes_per_original=1)
    common = ["--frames", "6", "--size", "48", "--min-face", "20", "--no-progress"]
    assert extract([str(tmp_path / "videos"), "--out", str(tmp_path / "cpu"), "--device", "cpu", *common]) == 0
    assert extract([str(tmp_path / "videos"), "--out", str(tmp_path / "gpu"), "--device", "cuda", *common]) == 0
    for manifest in (tmp_path / "cpu").rglob("manifest.json"):
        c = json.loads(manifest.read_text())
        g = json.loads((tmp_path / "gpu" / manifest.relative_to(tmp_path / "cpu")).read_text())
        assert c["status"] == g["status"] and len(c["crops"]) == len(g["crops"])
        for a, b in zip(c["crops"], g["crops"]):
            assert a["frame"] == b["frame"] and np.abs(np.subtract(a["box"], b["box"])).max() < 2.0


def test_torchrun_one_process_on_nccl(face_data, tmp_path):
    config = str(ROOT / "configs/video/tiny/dfdc_videomae_scratch.yaml")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           str(ROOT / "tools" / "train.py"), "--config", config, "--out", str(tmp_path / "run"),
           "--opts", f"data.root={face_data.dfdc}", *FAST]
    done = subprocess.run(cmd, env=run_env(), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x 1 processes" in done.stdout  # the DDP path, on NCCL
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 1 and np.isfinite(summary["test_acc1"])


def test_compiled_step_equals_eager(face_data):
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.trainer import TrainStep

    cfg = _video(face_data, "dfdc_videomae_scratch")  # no random masks: both see the same computation
    torch.manual_seed(0)
    model = build_model(cfg, 2).cuda().train()
    twin = copy.deepcopy(model)
    x = torch.randn(2, 3, cfg.model.num_frames, cfg.model.img_size, cfg.model.img_size, device="cuda")
    y = torch.tensor([0, 1], device="cuda")
    eager_loss, _ = TrainStep(model)((x, y))
    compiled_loss, _ = torch.compile(TrainStep(twin))((x, y))
    # fp32, but cuDNN convolutions (the patch embedding) may use TF32 and inductor fuses in another order
    assert torch.allclose(eager_loss, compiled_loss, atol=1e-3, rtol=1e-3)
    eager_loss.backward()
    compiled_loss.backward()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, atol=1e-3, rtol=1e-2), name


def test_model_benchmark_on_cuda_reports_mfu():
    from deepfake_ssat.bench.model import run_model_benchmark

    result = run_model_benchmark(models=["tiny"], ratios=(0.75,), repeats=2, warmup=1, matmul_size=1024,
                                 frames=8, img_size=32, batch=2, device="cuda")
    res = result["models"]["tiny"]
    assert result["dtype"] == "bfloat16 autocast" and result["matmul"]["before"]["dtype"] == "bfloat16"
    assert 0 < res["scratch"]["mfu"] < 1.5 and 0 < res["ratios"]["0.75"]["mfu"] < 1.5


def test_rng_state_of_the_runs_gpu_round_trips():
    """capture_rng / restore_rng on cuda:0 give the same GPU draws again; an older checkpoint's list of every
    visible GPU's state (more GPUs than this machine has) restores this device's entry."""
    from deepfake_ssat.engine.checkpoint import capture_rng, restore_rng

    device = torch.device("cuda", 0)
    torch.manual_seed(1)
    state = capture_rng(device)
    expected = torch.rand(4, device=device)
    torch.rand(9, device=device)
    restore_rng(state, device)
    assert torch.equal(torch.rand(4, device=device), expected)
    restore_rng({**state, "cuda": [state["cuda"]] + [torch.zeros_like(state["cuda"])] * 15}, device)
    assert torch.equal(torch.rand(4, device=device), expected)
