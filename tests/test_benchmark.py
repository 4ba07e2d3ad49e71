"""Fast checks of the ``model`` benchmark on the tiny video encoder (1 repeat, no warm-up)."""
import json
import os
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, requires_cxx

from deepfake_ssat.commands.benchmark import main as benchmark_main
from deepfake_ssat.bench.header import HEADER_KEYS
from deepfake_ssat.bench.model import (
    CpuMonitor, benchmark_model, build_variants, count_step_flops, format_summary, make_batch, make_optimizer,
    run_model_benchmark, time_interleaved)

TINY = dict(frames=8, img_size=32, batch=2)
RATIO_KEYS = {
    "mask_ratio", "visible_tokens", "ssat_step_seconds", "ssat_step_gflops", "ssat_over_scratch",
    "analytic_flop_ratio", "measured_over_analytic", "p1_ok", "goal", "cpu_utilization",
    "minor_faults_per_step", "sys_seconds_per_step",
}
P2_KEYS = {"cpu_fraction_of_matmul_peak", "step_gflops", "step_seconds", "matmul_gflops_per_s",
           "step_gflops_per_s", "p2_ok", "goal"}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread: tiny steps are overhead-bound, and 2 OpenMP threads on a busy 2-core box crawl."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _check_model_result(res: dict) -> None:
    assert res["model"] == "videomae_test"
    assert res["input_shape"] == [2, 3, 8, 32, 32]
    assert "tiny test model" in res["note"]
    assert P2_KEYS <= res["p2"].keys()
    assert isinstance(res["machine_load"], dict)
    assert isinstance(res["p2"]["p2_ok"], bool)
    assert res["p2"]["step_gflops"] > 0 and res["p2"]["step_seconds"] > 0
    assert set(res["ratios"]) == {"0.75", "0.95"}
    for r in res["ratios"].values():
        assert RATIO_KEYS <= r.keys()
        assert isinstance(r["p1_ok"], bool)
        assert r["analytic_flop_ratio"] > 1
        assert r["measured_over_analytic"] == pytest.approx(r["ssat_over_scratch"] / r["analytic_flop_ratio"])
    # more visible tokens -> more encoder FLOPs in the masked pass
    assert res["ratios"]["0.75"]["visible_tokens"] > res["ratios"]["0.95"]["visible_tokens"]
    assert res["ratios"]["0.75"]["analytic_flop_ratio"] > res["ratios"]["0.95"]["analytic_flop_ratio"]


@pytest.fixture(scope="module")
def tiny_result() -> dict:
    return benchmark_model("tiny", ratios=(0.75, 0.95), repeats=1, warmup=0, matmul_gflops_per_s=100.0, **TINY)


def test_benchmark_model_tiny(tiny_result):
    _check_model_result(tiny_result)
    assert json.loads(json.dumps(tiny_result)) == tiny_result  # JSON-able as is
    assert tiny_result["p2"]["matmul_gflops_per_s"] == 100.0


def test_same_encoder_weights_for_every_variant():
    scratch, ssat = build_variants("tiny", [0.75, 0.95], 8, 32)
    assert scratch.decoder is None and scratch.lam == 1.0
    ref = scratch.encoder.state_dict()
    for ratio, m in ssat.items():
        assert m.decoder is not None and m.mask_ratio == ratio and m.lam < 1.0
        state = m.encoder.state_dict()
        assert all(state[k].equal(v) for k, v in ref.items())


def test_flops_include_cpu_attention_and_match_vit_estimate():
    scratch, _ = build_variants("tiny", [0.75], 8, 32)
    x, y = make_batch(scratch, 2)
    total, by_op = count_step_flops(scratch, make_optimizer(scratch), x, y)
    assert total == sum(by_op.values())
    enc = scratch.encoder
    params = sum(p.numel() for p in enc.parameters())
    n, d, depth, b = enc.patch_embed.num_patches, enc.embed_dim, len(enc.blocks), x.shape[0]
    # 6 * params * tokens for the weights, 14 * N^2 * D per block for attention (4 forward + 10 backward)
    expected = 6 * params * n * b + depth * 14 * b * n * n * d
    assert 0.85 * expected < total < 1.1 * expected
    attention = sum(v for k, v in by_op.items() if "attention" in k)
    assert attention == depth * 14 * b * n * n * d


def test_cpu_monitor_fractions():
    monitor = CpuMonitor().start()
    time.sleep(0.5)  # /proc/stat counts 10 ms ticks: over a near-zero interval one tick is a huge fraction
    load = monitor.stop()
    if os.path.exists("/proc/stat"):
        assert set(load) == {"other_processes_cpu_fraction", "steal_fraction"}
        assert all(0.0 <= v <= 1.5 for v in load.values())


def test_time_interleaved_alternates_order():
    calls = []
    steps = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    out = time_interleaved(steps, repeats=3, warmup=1)
    assert calls == list("ABCCBAABCCBA")
    assert all(len(v[f]) == 3 for v in out.values() for f in ("seconds", "cpu_seconds", "sys_seconds", "minor_faults"))


def _env_without_pythonpath() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def test_cli_model_json():
    cmd = [sys.executable, "tools/benchmark.py", "model", "--json", "--models", "tiny", "--frames", "8",
           "--img-size", "32", "--batch", "2", "--ratios", "0.75,0.95", "--repeats", "1", "--warmup", "0",
           "--matmul-size", "256", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=_env_without_pythonpath(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["benchmark"] == "model" and set(HEADER_KEYS) <= set(result)  # the one header every benchmark writes
    assert result["command"].startswith("python tools/benchmark.py model --json --models tiny")
    for key in ("torch", "threads", "device", "timing_method", "flop_method", "matmul", "summary",
                "machine_load", "warnings", "wall_seconds"):
        assert key in result
    assert result["threads"] == 1
    assert result["malloc"]["tuned"] is True  # the CLI applies what tools/train.py applies
    assert result["settings"]["batch"] == 2 and result["settings"]["mask_ratios"] == [0.75, 0.95]
    _check_model_result(result["models"]["tiny"])


def test_cli_unknown_model_fails_cleanly(capsys):
    rc = benchmark_main(["model", "--json", "--models", "nope", "--matmul-size", "64", "--threads", "1"])
    captured = capsys.readouterr()
    assert rc == 2
    assert "nope" in captured.err and captured.out == ""


def test_cli_requires_a_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        benchmark_main([])
    assert e.value.code == 2


def test_run_model_benchmark_and_text_summary():
    result = run_model_benchmark(models=["tiny"], ratios=(0.75, 0.95), repeats=1, warmup=0, matmul_size=128,
                                 command="test", **TINY)
    assert json.loads(json.dumps(result))["command"] == "test"
    assert result["malloc"]["tuned"] is False
    _check_model_result(result["models"]["tiny"])
    assert result["matmul"]["reference_gflops_per_s"] == result["models"]["tiny"]["p2"]["matmul_gflops_per_s"]
    text = format_summary(result)
    assert "mask 0.75" in text and "P1" in text and "P2" in text
    # MFU: each variant's step FLOP/s over the same run's matmul reference (fp32 on the CPU, bf16 on CUDA)
    res, ref = result["models"]["tiny"], result["matmul"]["reference_gflops_per_s"]
    assert res["scratch"]["mfu"] == pytest.approx(res["scratch"]["step_gflops_per_s"] / ref)
    for k, v in res["ratios"].items():
        assert v["mfu"] > 0 and v["mfu"] == pytest.approx(v["ssat_step_gflops_per_s"] / ref)
        assert result["summary"]["tiny"]["mfu"][f"ssat@{k}"] == round(v["mfu"], 4)
    assert result["device"] == "cpu" and result["matmul"]["before"]["dtype"] == "float32"
    assert result["compile"] is False and res["compile_seconds"] is None


@pytest.mark.slow
@requires_cxx
def test_model_benchmark_times_compiled_steps():
    """--compile: the step is compiled before the timed rounds and timed compiled; its FLOPs are counted on the
    eager step, so they equal an eager run's (the scratch variant alone: compiling on CPUs is slow)."""
    from torch._dynamo.utils import counters

    eager = run_model_benchmark(models=["tiny"], ratios=(), repeats=1, warmup=0, matmul_size=128, **TINY)
    torch._dynamo.reset()
    counters.clear()
    compiled = run_model_benchmark(models=["tiny"], ratios=(), repeats=1, warmup=0, matmul_size=128,
                                   compile_steps=True, **TINY)
    assert counters["stats"]["unique_graphs"] >= 1  # the step ran compiled
    res = compiled["models"]["tiny"]
    assert compiled["compile"] is True and set(res["compile_seconds"]) == {"scratch"}
    assert res["scratch"]["step_gflops"] == eager["models"]["tiny"]["scratch"]["step_gflops"] > 0
    assert res["scratch"]["mfu"] > 0 and "compiled steps" in format_summary(compiled)


def test_train_benchmark_runs_the_real_trainer(capsys):
    """benchmark.py train: the trainer's updates on a synthetic store vs the isolated step, one JSON object."""
    from deepfake_ssat.commands.benchmark import main as bench_main

    assert bench_main(["train", "--steps", "3", "--warmup", "1", "--batch", "2", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout is the one JSON object; the trainer's own lines go to stderr
    assert "[train]" in captured.err
    assert set(HEADER_KEYS) <= set(result) and result["device"] == "cpu"
    assert result["benchmark"] == "train" and result["steps"] == 3 and result["batch"] == 2
    assert result["compile"] is False  # eager by default; --opts train.compile=true times the compiled step
    assert result["e2e_clips_per_s"] > 0 and result["step_clips_per_s"] > 0
    # the rates are rounded to 3 decimals in the JSON, the ratio to 4 from the unrounded rates
    assert result["e2e_over_step"] == pytest.approx(result["e2e_clips_per_s"] / result["step_clips_per_s"], abs=2e-4)
    assert bench_main(["train", "--steps", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --steps must be >= 1")
