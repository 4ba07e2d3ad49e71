"""The ``model`` benchmark: does SSAT's auxiliary task cost what its FLOPs say, and does a plain step use the CPU?

Per encoder and mask ratio, an SSAT train step (both passes, decoder, joint loss, backward, AdamW) is timed
against a scratch step of the same encoder, weights and batch (clips [B, C, T, H, W] or images [B, C, H, W]).
P1: (t_ssat / t_scratch) / (F_ssat / F_scratch) <= 1.05; P2: (F_scratch / t_scratch) / fp32 matmul FLOP/s >= 0.6.
With ``compile_steps``, each variant's forward and loss run ``torch.compile``-d (as ``train.compile: true`` trains; the
FLOPs are still counted on the eager step, so the same work is divided by the compiled step's time).
"""
from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn as nn

from ..config import Config, DataConfig, DecoderConfig, ModelConfig, SSATConfig
from ..engine.build import build_model
from ..engine.trainer import TrainStep
from ..models import SSAT
from ..models.flops import count_flops, flop_mapping, op_name
from ..models.registry import get_model_factory
from .header import run_header

P1_GOAL = 1.05  # measured_over_analytic <= this
P2_GOAL = 0.6  # cpu_fraction_of_matmul_peak >= this

MODEL_ALIASES = {"tiny": "videomae_test", "small": "videomae_small", "base": "videomae_base"}
TINY_NOTE = ("tiny test model (videomae_test: width 64, depth 2, patch 8): not representative of the real "
             "encoders; at its native 8x32x32 per-op and Python overheads dominate, at larger inputs its many "
             "patch-8 tokens make attention dominate")

OPTIMIZER = {"name": "torch.optim.AdamW", "lr": 1.0e-4, "betas": (0.9, 0.95), "weight_decay": 0.05}


# ---------------------------------------------------------------------------------------------
# Models, batches, steps


def resolve_model_name(name: str) -> str:
    """``tiny``/``small``/``base`` -> registered video encoder name; registered names pass through.

    An image encoder may carry a patch size: ``vit_tiny_patch16_224@p4`` (patch 4, e.g. at 32 px)."""
    base, _ = split_patch(name)
    return MODEL_ALIASES.get(base, base) + name[len(base):]


def split_patch(name: str) -> tuple[str, int | None]:
    """``"vit_tiny_patch16_224@p4"`` -> ``("vit_tiny_patch16_224", 4)``; no ``@pN`` -> ``(name, None)``."""
    base, sep, patch = name.partition("@p")
    if not sep:
        return name, None
    if not patch.isdigit() or int(patch) < 1:
        raise ValueError(f"model {name!r}: the patch suffix must be @p<positive int>, e.g. @p4")
    return base, int(patch)


def is_video_model(name: str) -> bool:
    """Whether registered encoder ``name`` (an alias or ``@pN`` allowed) takes clips (``num_frames``)."""
    return get_model_factory(split_patch(resolve_model_name(name))[0]).__module__.endswith(".video_vit")


def _config(model: ModelConfig, lam: float, mask_ratio: float, decoder: DecoderConfig | None) -> Config:
    return Config(model=model, decoder=decoder, ssat=SSATConfig(lam=lam, mask_ratio=mask_ratio),
                  data=DataConfig(name="digits"))  # data is a placeholder: nothing is loaded


def build_variants(
        model: str,
        ratios: Sequence[float],
        frames: int | None = None,
        img_size: int | None = None,
        lam: float = 0.1,
        decoder: DecoderConfig | None = None,
        seed: int = 0,
) -> tuple[SSAT, dict[float, SSAT]]:
    """Scratch model (lam 1, no decoder) and one SSAT model per mask ratio, all with the same encoder weights.

    ``frames`` / ``img_size`` None keep the factory defaults; ``frames`` is ignored for image encoders
    (their batches are [B, C, H, W]).
    """
    name, patch = split_patch(resolve_model_name(model))
    video = is_video_model(model)
    if patch is not None and video:
        raise ValueError(f"model {model!r}: @p<patch> is for image encoders")
    enc = ModelConfig(name=name, img_size=img_size, num_frames=frames if video else None, patch_size=patch)
    torch.manual_seed(seed)
    scratch = build_model(_config(enc, 1.0, ratios[0] if ratios else 0.75, None), num_classes=2)
    encoder_state = scratch.encoder.state_dict()
    ssat: dict[float, SSAT] = {}
    for ratio in ratios:
        torch.manual_seed(seed)
        m = build_model(_config(enc, lam, ratio, decoder or DecoderConfig()), num_classes=2)
        m.encoder.load_state_dict(encoder_state)
        ssat[ratio] = m
    return scratch, ssat


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """AdamW as :data:`OPTIMIZER` says; the fused kernel when the model is on CUDA (as training does)."""
    o = OPTIMIZER
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW(model.parameters(), lr=o["lr"], betas=o["betas"], weight_decay=o["weight_decay"],
                             **({"fused": True} if fused else {}))


def make_batch(model: SSAT, batch: int, seed: int = 0,
               device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor]:
    """Random batch (float32) for ``model``'s encoder, clips [B, C, T, H, W] or images [B, C, H, W], and
    labels [B] in {0, 1}."""
    enc = model.encoder
    g = torch.Generator().manual_seed(seed)
    if len(enc.grid_size) == 3:
        shape = (batch, enc.in_chans, enc.num_frames, enc.img_size, enc.img_size)
    else:
        shape = (batch, enc.in_chans, enc.img_size, enc.img_size)
    x = torch.randn(shape, generator=g)
    y = torch.arange(batch, dtype=torch.int64) % 2
    return x.to(device), y.to(device)


def train_step(model: SSAT, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               compiled: nn.Module | None = None) -> None:
    """One full training update: forward, joint loss, backward, AdamW step, zero_grad. On CUDA: under bf16
    autocast (as training runs there), and finished (synchronised) before it returns, so it can be timed.
    ``compiled``: ``torch.compile(TrainStep(model))``, run for the forward and loss instead of eager."""
    cuda = x.device.type == "cuda"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
        if compiled is not None:
            loss, _ = compiled((x, y))
        else:
            out = model(x)
            loss, _ = model.loss(out, x, y)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize(x.device)


def count_step_flops(model: SSAT, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                     y: torch.Tensor) -> tuple[int, dict[str, int]]:
    """FLOPs of one train step (forward + backward; AdamW ops have no formula) -> (total, per aten op)."""
    return count_flops(lambda: train_step(model, optimizer, x, y))


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def time_interleaved(
        steps: dict[str, Callable[[], None]],
        repeats: int,
        warmup: int,
) -> dict[str, dict[str, list[float]]]:
    """Run the ``steps`` round-robin ``warmup + repeats`` times; time the last ``repeats`` rounds.

    Every round runs each step once (A B C, then C B A the next round, ...), so slow drift and
    background load hit every step alike. Returns per step ``{"seconds": [...], "cpu_seconds": [...],
    "sys_seconds": [...], "minor_faults": [...]}``, one entry per timed round: ``time.perf_counter``
    wall time, ``time.process_time`` CPU time, and (from ``getrusage``; 0 where unavailable) kernel
    time and minor page faults, which show memory being handed back to the OS and faulted in again.
    """
    names = list(steps)
    fields = ("seconds", "cpu_seconds", "sys_seconds", "minor_faults")
    out: dict[str, dict[str, list[float]]] = {n: {f: [] for f in fields} for n in names}
    gc.collect()
    for r in range(warmup + repeats):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            u0 = _rusage()
            c0 = time.process_time()
            t0 = time.perf_counter()
            steps[name]()
            t1 = time.perf_counter()
            c1 = time.process_time()
            u1 = _rusage()
            if r >= warmup:
                rec = out[name]
                rec["seconds"].append(t1 - t0)
                rec["cpu_seconds"].append(c1 - c0)
                rec["sys_seconds"].append(u1[0] - u0[0])
                rec["minor_faults"].append(u1[1] - u0[1])
    return out


def _rusage() -> tuple[float, int]:
    """(kernel CPU seconds, minor page faults) of this process so far; zeros without ``resource``."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0, 0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_stime, ru.ru_minflt


def measure_matmul(n: int = 2048, repeats: int = 10, warmup: int = 3,
                   device: torch.device = torch.device("cpu")) -> dict[str, Any]:
    """``torch.mm`` of two n x n matrices: median and best GFLOP/s (2 n^3 FLOPs per product); fp32 on the CPU,
    bf16 on CUDA (the precision the steps run in there; give n >= 8192 to reach a GPU's peak)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    c = torch.empty(n, n, device=device, dtype=dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        torch.mm(a, b, out=c)
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        sync()
        times.append(time.perf_counter() - t0)
    flops = 2 * n ** 3
    return {
        "size": n,
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
        "seconds_median": _median(times),
        "gflops_per_s_median": flops / _median(times) / 1e9,
        "gflops_per_s_best": flops / min(times) / 1e9,
    }


# ---------------------------------------------------------------------------------------------
# The ``model`` benchmark


def _params(m: nn.Module | None) -> int:
    return 0 if m is None else sum(p.numel() for p in m.parameters())


def _gflops(by_op: dict[str, int]) -> dict[str, float]:
    return {k: round(v / 1e9, 4) for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])}


def _spread(xs: Sequence[float]) -> float:
    """Interquartile range / median of the timings (0 with fewer than 2)."""
    if len(xs) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return (q3 - q1) / _median(xs)


def _utilization(t: dict[str, list[float]], threads: int) -> float:
    """CPU seconds / (wall seconds x threads): ~1 when the step had all its threads' cores to itself."""
    return sum(t["cpu_seconds"]) / max(sum(t["seconds"]) * threads, 1e-12)


def benchmark_model(model: str, frames: int | None, img_size: int | None, batch: int, ratios: Sequence[float],
                    repeats: int, warmup: int, matmul_gflops_per_s: float | None = None,
                    seed: int = 0, device: torch.device = torch.device("cpu"),
                    compile_steps: bool = False) -> dict[str, Any]:
    """P1 per mask ratio and P2 for one encoder; see the module docstring (the settings' defaults are
    :func:`run_model_benchmark`'s).

    ``matmul_gflops_per_s`` is the fp32 matmul throughput P2 divides by (measured with
    :func:`measure_matmul` when None).
    """
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError(f"need repeats >= 1, warmup >= 0, batch >= 1; got {repeats}, {warmup}, {batch}")
    ratios = [float(r) for r in ratios]
    if len(set(ratios)) != len(ratios):
        raise ValueError(f"mask ratios must be distinct, got {ratios}")
    threads = torch.get_num_threads()
    if matmul_gflops_per_s is None:
        matmul_gflops_per_s = measure_matmul(device=device)["gflops_per_s_median"]
    scratch, ssat = build_variants(model, ratios, frames, img_size, seed=seed)
    scratch, ssat = scratch.to(device), {r: m.to(device) for r, m in ssat.items()}
    x, y = make_batch(scratch, batch, seed, device)
    variants: dict[str, SSAT] = {"scratch": scratch, **{f"ssat@{r:g}": m for r, m in ssat.items()}}
    flops, times, compile_seconds, machine = _measure_variants(variants, x, y, repeats, warmup, compile_steps)

    enc = scratch.encoder
    result: dict[str, Any] = {
        "model": resolve_model_name(model),
        "kind": "video" if len(enc.grid_size) == 3 else "image",
        "input_shape": list(x.shape),
        "batch": batch,
        "tokens": enc.patch_embed.num_patches if hasattr(enc, "patch_embed") else None,
        "encoder_params": _params(enc),
        "compile_seconds": compile_seconds or None,
        "machine_load": machine,
        **_scratch_record(times["scratch"], flops["scratch"], matmul_gflops_per_s, threads),
        "ratios": {f"{r:g}": _ratio_record(m, r, x, times, flops, matmul_gflops_per_s, threads)
                   for r, m in ssat.items()},
    }
    if resolve_model_name(model) == "videomae_test":
        result["note"] = TINY_NOTE
    return result


def _measure_variants(variants: dict[str, SSAT], x: torch.Tensor, y: torch.Tensor, repeats: int, warmup: int,
                      compile_steps: bool) -> tuple[dict, dict, dict[str, float], dict[str, float]]:
    """Each variant's counted step FLOPs (also its first, untimed step), compile seconds (compiled first, untimed,
    one step each) and interleaved step times, with the machine's load over the timed steps only (compiling runs
    worker processes of its own): ``(flops, times, compile_seconds, machine_load)``."""
    optimizers = {k: make_optimizer(m) for k, m in variants.items()}
    flops = {k: count_step_flops(m, optimizers[k], x, y) for k, m in variants.items()}
    compiled = {k: torch.compile(TrainStep(m)) for k, m in variants.items()} if compile_steps else {}
    compile_seconds = {}
    for k, step in compiled.items():
        start = time.perf_counter()
        train_step(variants[k], optimizers[k], x, y, step)
        compile_seconds[k] = round(time.perf_counter() - start, 2)
    monitor = CpuMonitor().start()

    def stepper(key: str) -> Callable[[], None]:
        return lambda: train_step(variants[key], optimizers[key], x, y, compiled.get(key))

    times = time_interleaved({k: stepper(k) for k in variants}, repeats, warmup)
    return flops, times, compile_seconds, monitor.stop()


def _scratch_record(t: dict[str, list[float]], flops: tuple[int, dict[str, int]], matmul_gflops_per_s: float,
                    threads: int) -> dict[str, Any]:
    """The ``scratch`` and ``p2`` entries of one model's result: the classification-only step against the matmul
    reference."""
    seconds = _median(t["seconds"])
    step_gflops_per_s = flops[0] / seconds / 1e9
    fraction = step_gflops_per_s / matmul_gflops_per_s
    return {
        "scratch": {
            "step_seconds": seconds,
            "step_seconds_all": t["seconds"],
            "step_seconds_min": min(t["seconds"]),
            "step_seconds_spread": _spread(t["seconds"]),
            "sys_seconds_per_step": _median(t["sys_seconds"]),
            "minor_faults_per_step": int(_median(t["minor_faults"])),
            "step_gflops": flops[0] / 1e9,
            "step_gflops_per_s": step_gflops_per_s,
            "cpu_utilization": _utilization(t, threads),
            "mfu": fraction,
            "gflops_by_op": _gflops(flops[1]),
        },
        "p2": {
            "cpu_fraction_of_matmul_peak": fraction,
            "step_gflops": flops[0] / 1e9,
            "step_seconds": seconds,
            "step_gflops_per_s": step_gflops_per_s,
            "matmul_gflops_per_s": matmul_gflops_per_s,
            "goal": P2_GOAL,
            "p2_ok": bool(fraction >= P2_GOAL),
        },
    }


def _ratio_record(m: SSAT, r: float, x: torch.Tensor, times: dict[str, dict[str, list[float]]],
                  flops: dict[str, tuple[int, dict[str, int]]], matmul_gflops_per_s: float,
                  threads: int) -> dict[str, Any]:
    """P1 of the SSAT variant at mask ratio ``r``: its step against scratch's, measured and by FLOPs."""
    key, scratch = f"ssat@{r:g}", times["scratch"]["seconds"]
    t = times[key]
    ssat_t, scratch_t = _median(t["seconds"]), _median(scratch)
    ssat_f = flops[key][0]
    measured, analytic = ssat_t / scratch_t, ssat_f / flops["scratch"][0]
    with torch.no_grad():
        visible = m.random_mask(1, x.device)[0].shape[1]
    return {
        "mask_ratio": r,
        "visible_tokens": visible,
        "decoder_params": _params(m.decoder),
        "ssat_step_seconds": ssat_t,
        "ssat_step_seconds_all": t["seconds"],
        "ssat_step_seconds_min": min(t["seconds"]),
        "ssat_step_seconds_spread": _spread(t["seconds"]),
        "sys_seconds_per_step": _median(t["sys_seconds"]),
        "minor_faults_per_step": int(_median(t["minor_faults"])),
        "ssat_step_gflops": ssat_f / 1e9,
        "ssat_step_gflops_per_s": ssat_f / ssat_t / 1e9,
        "cpu_utilization": _utilization(t, threads),
        "mfu": ssat_f / ssat_t / 1e9 / matmul_gflops_per_s,
        "ssat_over_scratch": measured,
        "ssat_over_scratch_paired_median": _median([a / b for a, b in zip(t["seconds"], scratch)]),
        "ssat_over_scratch_of_minima": min(t["seconds"]) / min(scratch),
        "analytic_flop_ratio": analytic,
        "measured_over_analytic": measured / analytic,
        "goal": P1_GOAL,
        "p1_ok": bool(measured / analytic <= P1_GOAL),
        "gflops_by_op": _gflops(flops[key][1]),
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


class CpuMonitor:
    """CPU time of the whole machine vs this process between ``start()`` and ``stop()`` (Linux /proc/stat).

    ``stop()`` returns ``other_processes_cpu_fraction`` (busy CPU time not spent by this process, over
    wall x cores) and ``steal_fraction`` (time the hypervisor gave the vCPUs to someone else), or an
    empty dict where /proc/stat is unreadable.
    """

    def __init__(self) -> None:
        self._start: tuple[list[int], float, float] | None = None

    @staticmethod
    def _stat() -> list[int] | None:
        try:
            with open("/proc/stat") as f:
                return [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None

    @staticmethod
    def _own_cpu() -> float:
        t = os.times()
        return t.user + t.system

    def start(self) -> "CpuMonitor":
        stat = self._stat()
        self._start = None if stat is None else (stat, self._own_cpu(), time.perf_counter())
        return self

    def stop(self) -> dict[str, float]:
        stat = self._stat()
        if self._start is None or stat is None:
            return {}
        stat0, own0, wall0 = self._start
        d = [b - a for a, b in zip(stat0, stat)]
        hz = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        busy = (d[0] + d[1] + d[2] + d[5] + d[6]) / hz
        steal = (d[7] if len(d) > 7 else 0) / hz
        capacity = max((time.perf_counter() - wall0) * (os.cpu_count() or 1), 1e-9)
        return {
            "other_processes_cpu_fraction": round(max(busy - (self._own_cpu() - own0), 0.0) / capacity, 4),
            "steal_fraction": round(steal / capacity, 4),
        }


def run_model_benchmark(
        models: Iterable[str] = ("small", "tiny"),
        frames: int | None = 16,
        img_size: int | None = 112,
        batch: int = 4,
        ratios: Sequence[float] = (0.75, 0.95),
        repeats: int = 10,
        warmup: int = 2,
        matmul_size: int = 2048,
        command: str | None = None,
        seed: int = 0,
        malloc: dict[str, Any] | None = None,
        device: str = "cpu",
        compile_steps: bool = False,
) -> dict[str, Any]:
    """The whole ``model`` benchmark as one JSON-able dict (see the module docstring).

    The matmul throughput is measured before and after the models; P2 divides by the higher
    median of the two (the more demanding reference); ``mfu`` per model and variant = its step FLOP/s ÷ that
    reference (on CUDA: bf16 autocast steps, fused AdamW, bf16 matmul). ``malloc`` (what
    :func:`~deepfake_ssat.data.workers.tune_malloc` returned, if the caller ran it) is recorded as is.
    """
    start = time.perf_counter()
    load_start = _loadavg()
    monitor = CpuMonitor().start()
    threads = torch.get_num_threads()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu")
    mm_before = measure_matmul(matmul_size, device=dev)
    results: dict[str, Any] = {}
    matmul_ref = mm_before["gflops_per_s_median"]
    for name in models:
        results[name] = benchmark_model(name, frames, img_size, batch, ratios, repeats, warmup,
                                        matmul_gflops_per_s=matmul_ref, seed=seed, device=dev,
                                        compile_steps=compile_steps)
    mm_after = measure_matmul(matmul_size, device=dev)
    matmul_ref = max(mm_before["gflops_per_s_median"], mm_after["gflops_per_s_median"])
    for res in results.values():
        _rederive(res, matmul_ref)
    machine = monitor.stop()
    # with compile_steps the whole run includes inductor's compile workers: only the timed steps' load counts
    warnings = contention_warnings({} if compile_steps else machine, results, threads)
    return {
        **run_header("model", command, str(dev)),
        "python_executable": sys.executable,
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "cpu": _cpu_name(),
        "threads": threads,
        "dtype": "bfloat16 autocast" if dev.type == "cuda" else "float32",
        "compile": compile_steps,
        "malloc": malloc or {"tuned": False, "why": "default allocator settings (--default-malloc)"},
        "settings": _settings(results, frames, img_size, batch, ratios, repeats, warmup, seed),
        **_methods(repeats, warmup),
        "matmul": {
            "what": f"{mm_before['dtype']} torch.mm {matmul_size}x{matmul_size}, median of 10 after 3 warm-up, "
                    f"same threads / device",
            "before": mm_before,
            "after": mm_after,
            "reference_gflops_per_s": matmul_ref,
        },
        "machine_load": {**machine, "loadavg_start": load_start, "loadavg_end": _loadavg()},
        "models": results,
        "summary": {name: _summary(res) for name, res in results.items()},
        "warnings": warnings,
        "wall_seconds": time.perf_counter() - start,
    }


def contention_warnings(machine: dict[str, float], results: dict[str, Any], threads: int,
                        min_utilization: float = 0.8, max_other: float = 0.05) -> list[str]:
    """Say when other processes or the hypervisor competed for the cores (the timings then mean little)."""
    out = []
    for name, res in [("whole run", {"machine_load": machine}), *results.items()]:
        load = res.get("machine_load") or {}
        for key in ("other_processes_cpu_fraction", "steal_fraction"):
            if load.get(key, 0.0) > max_other:
                out.append(f"{name}: {key} = {load[key]:.3f} (> {max_other}): the cores were shared")
    for name, res in results.items():
        utils = {"scratch": res["scratch"]["cpu_utilization"],
                 **{f"ssat@{k}": v["cpu_utilization"] for k, v in res["ratios"].items()}}
        low = {k: round(u, 2) for k, u in utils.items() if u < min_utilization}
        if low:
            out.append(f"{name}: CPU time / (wall x {threads} threads) below {min_utilization} for {low}: "
                       "the steps did not get all cores (contention, or little parallel work)")
    return out


def format_summary(result: dict[str, Any]) -> str:
    """Short human-readable table of a :func:`run_model_benchmark` result."""
    compiled = ", compiled steps" if result.get("compile") else ""
    lines = [f"torch {result['torch']}, {result['threads']} threads, {result['cpu']}, {result['device']} "
             f"{result['dtype']}{compiled}; {result['matmul']['before']['dtype']} matmul "
             f"{result['matmul']['reference_gflops_per_s']:.1f} GFLOP/s"]
    for name, res in result["models"].items():
        p2 = res["p2"]
        lines.append(f"{name} ({res['model']}, input {res['input_shape']}): scratch {p2['step_seconds']:.3f} s, "
                     f"{p2['step_gflops']:.2f} GFLOP, {p2['step_gflops_per_s']:.1f} GFLOP/s = "
                     f"{p2['cpu_fraction_of_matmul_peak']:.2f} of matmul peak (P2 {'ok' if p2['p2_ok'] else 'FAIL'}), "
                     f"{res['scratch']['minor_faults_per_step']} page faults/step")
        for k, v in res["ratios"].items():
            lines.append(f"  mask {k}: ssat {v['ssat_step_seconds']:.3f} s, measured x{v['ssat_over_scratch']:.3f} "
                         f"vs FLOPs x{v['analytic_flop_ratio']:.3f} -> {v['measured_over_analytic']:.3f} "
                         f"(P1 {'ok' if v['p1_ok'] else 'FAIL'}), {v['minor_faults_per_step']} page faults/step")
        if res.get("note"):
            lines.append(f"  note: {res['note']}")
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)


def _rederive(res: dict[str, Any], matmul_ref: float) -> None:
    """Re-derive one model's P2 and MFUs against the final matmul reference (the higher of before / after)."""
    p2 = res["p2"]
    p2["matmul_gflops_per_s"] = matmul_ref
    p2["cpu_fraction_of_matmul_peak"] = p2["step_gflops_per_s"] / matmul_ref
    p2["p2_ok"] = bool(p2["cpu_fraction_of_matmul_peak"] >= P2_GOAL)
    res["scratch"]["mfu"] = p2["cpu_fraction_of_matmul_peak"]
    for v in res["ratios"].values():
        v["mfu"] = v["ssat_step_gflops_per_s"] / matmul_ref


def _settings(results: dict[str, Any], frames: int | None, img_size: int | None, batch: int, ratios: Sequence[float],
              repeats: int, warmup: int, seed: int) -> dict[str, Any]:
    """What was measured, as the result's ``settings``."""
    return {
        "models": {n: resolve_model_name(n) for n in results},
        "frames": frames,
        "img_size": img_size,
        "batch": batch,
        "mask_ratios": [float(r) for r in ratios],
        "repeats": repeats,
        "warmup": warmup,
        "seed": seed,
        "scratch": "SSAT wrapper with lam=1.0 and no decoder (classification pass only)",
        "ssat": "lam=0.1, DecoderConfig() (depth 2, width 128, 4 heads), tube masking for video encoders, "
                "per-patch random masking for image encoders (frames ignored for those)",
        "optimizer": {**OPTIMIZER, "betas": list(OPTIMIZER["betas"]), "implementation": "torch default"},
    }


def _methods(repeats: int, warmup: int) -> dict[str, str]:
    """How steps were timed and FLOPs counted (``timing_method``, ``flop_method``)."""
    return {
        "timing_method": (
            "time.perf_counter around one train step (forward, loss, backward, AdamW step, "
            "zero_grad(set_to_none=True)) on a fixed batch; per model the scratch and SSAT variants "
            f"run round-robin, order reversed every other round (ABBA...), {warmup} warm-up rounds "
            f"then {repeats} timed rounds; step time = median over the timed rounds; "
            "ssat_over_scratch = ratio of medians (ssat_over_scratch_paired_median: median of "
            "per-round ratios; ssat_over_scratch_of_minima: ratio of the fastest steps); "
            "*_spread = interquartile range / median; sys_seconds_per_step and minor_faults_per_step "
            "(getrusage, medians) expose allocator page-fault churn. cpu_utilization = process CPU time / "
            "(wall time x threads); machine_load (from /proc/stat): CPU time used by other processes "
            "and hypervisor steal, as fractions of wall time x cores."
        ),
        "flop_method": (
            "torch.utils.flop_counter.FlopCounterMode(display=False) around one train step "
            "(forward + backward; elementwise, norm and optimizer ops have no formula and count 0). "
            "Added formulas (torch has none on CPU): "
            + (", ".join(op_name(op) for op in flop_mapping()) or "none needed")
            + " counted like torch's CUDA SDPA formulas (2 bmm forward, 5 bmm backward)."
        ),
    }


def _summary(res: dict[str, Any]) -> dict[str, Any]:
    """One model's goals at a glance: P2, MFUs, P1 per ratio."""
    return {
        "p2_ok": res["p2"]["p2_ok"],
        "cpu_fraction_of_matmul_peak": round(res["p2"]["cpu_fraction_of_matmul_peak"], 4),
        "mfu": {"scratch": round(res["scratch"]["mfu"], 4),
                **{f"ssat@{k}": round(v["mfu"], 4) for k, v in res["ratios"].items()}},
        **{f"p1_ok@{k}": v["p1_ok"] for k, v in res["ratios"].items()},
        **{f"measured_over_analytic@{k}": round(v["measured_over_analytic"], 4) for k, v in res["ratios"].items()},
    }
