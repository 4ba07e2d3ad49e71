"""The ``train`` benchmark: does the real trainer keep the device as busy as an isolated train step does?

On a synthetic face store, :func:`~deepfake_ssat.engine.trainer.train_one_epoch` (loader workers, host -> device
copies, the step, logging; the ``last.pt`` saved where it stops is timed apart) runs N updates; then the same model,
batch size and device run N isolated steps on one batch already on the device. ``e2e_over_step`` = end-to-end clips/s ÷ isolated clips/s
(goal: >= 0.9 on CPU, >= 0.8 on a GPU with the config's ``data.loader.num_workers``).
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from ..config import Config, find_config, load_config
from ..data.transforms import clip_span
from ..engine.distributed import DistInfo
from ..runtime import autocast, resolve_device
from ..engine.trainer import Run, setup_run, to_device, train_one_epoch
from ..synthetic.extractions import write_synthetic_extraction
from .header import run_header

DEFAULT_CONFIG = "video/tiny/dfdc_videomae_095"


def benchmark_config(config: str, root: Path, device: str, steps: int, warmup: int, batch: int | None,
                     num_workers: int | None, opts: list[str]) -> Config:
    """``config`` (a packaged name or a file) on the synthetic store at ``root``, with one epoch long enough
    for ``warmup + steps`` updates, no validation inside the timed updates and no periodic checkpoints."""
    cfg = load_config(find_config(config), [f"data.root={root}", f"train.device={device}", "train.epochs=1",
                                            "train.save_every_steps=0", "train.warmup_epochs=0", *opts])
    loader = cfg.data.loader
    if batch is not None:
        loader = dataclasses.replace(loader, batch_size=batch)
    if num_workers is not None:
        loader = dataclasses.replace(loader, num_workers=num_workers)
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, loader=loader))


def _synthetic_store(root: Path, cfg: Config, updates: int) -> int:
    """Enough synthetic videos for more than ``updates`` training batches, so that validation never runs inside
    the timed updates (DFDC-style, 3 parts: val and test take one part each, so 3x as many); returns the number
    of videos."""
    span = clip_span(cfg.model.num_frames, cfg.data.faces.frame_step)
    per_epoch = (updates + 2) * cfg.data.loader.batch_size * cfg.train.accum_steps
    videos = 3 * per_epoch + 6
    write_synthetic_extraction(root, videos, max(span, 16), cfg.model.img_size)
    return videos


def _time_updates(run: Run, updates: int) -> tuple[float, float]:
    """Seconds for the trainer to do ``updates`` more optimizer updates (within epoch 0), without and with the
    ``last.pt`` it writes where it stops (a real epoch of thousands of updates amortises that one save)."""
    saving = [0.0]
    save = run.checkpoint

    def timed_save(name: str, rng: dict) -> None:
        start = time.perf_counter()
        save(name, rng)
        saving[0] += time.perf_counter() - start

    run.checkpoint = timed_save  # the same save, timed
    _sync(run.device)
    start = time.perf_counter()
    try:
        train_one_epoch(run, 0, max_steps=run.state.step + updates)
        _sync(run.device)
    finally:
        del run.checkpoint
    total = time.perf_counter() - start
    return total - saving[0], total


def _time_isolated(run: Run, batch: Any, steps: int) -> float:
    """Seconds for ``steps`` train steps (forward, loss, backward, gradient clipping if configured, AdamW,
    zero_grad) on one batch already on the device."""
    _sync(run.device)
    start = time.perf_counter()
    for _ in range(steps):
        with autocast(run.device, run.amp_dtype):
            loss, _ = run.net(batch)
        loss.item()
        run.scaler.scale(loss).backward()
        if run.cfg.train.clip_grad is not None:  # as the trainer's update does
            run.scaler.unscale_(run.optimizer)
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.train.clip_grad)
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
    _sync(run.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_train_benchmark(config: str = DEFAULT_CONFIG, device: str = "cpu", steps: int = 20, warmup: int = 3,
                        batch: int | None = None, num_workers: int | None = None, opts: list[str] | None = None,
                        command: str | None = None) -> dict[str, Any]:
    """Measure ``e2e_over_step`` for ``config`` on ``device``; returns the JSON-ready result."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"--steps must be >= 1 and --warmup >= 0, got {steps}, {warmup}")
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        store, out = Path(tmp) / "store", Path(tmp) / "run"
        cfg = benchmark_config(config, store, device, steps, warmup, batch, num_workers, list(opts or []))
        videos = _synthetic_store(store, cfg, warmup + steps)
        run = setup_run(cfg, out, None, DistInfo(), resolve_device(cfg.train.device, "train.device"))
        if run.updates_per_epoch < warmup + steps:
            raise ValueError(f"{config}: {run.updates_per_epoch} updates per epoch on {videos} synthetic videos, "
                             f"fewer than --warmup + --steps = {warmup + steps}")
        try:
            if warmup:
                _time_updates(run, warmup)
            e2e, with_save = _time_updates(run, steps)
            batch_data = to_device(next(iter(run.loader)), run.device)
            run.model.train()
            _time_isolated(run, batch_data, max(warmup, 1))
            isolated = _time_isolated(run, batch_data, steps)
        finally:
            if run.writer is not None:
                run.writer.close()
    clips = steps * cfg.data.loader.batch_size * cfg.train.accum_steps
    e2e_rate, step_rate = clips / e2e, clips / isolated
    return {
        **run_header("train", command, str(run.device)),
        "config": config, "model": cfg.model.name,
        "clip": [cfg.model.num_frames, cfg.model.img_size, cfg.model.img_size],
        "batch": cfg.data.loader.batch_size, "num_workers": cfg.data.loader.num_workers, "amp": str(run.amp_dtype),
        "compile": cfg.train.compile,
        "steps": steps, "warmup": warmup, "videos": videos,
        "e2e_seconds": round(e2e, 4), "isolated_seconds": round(isolated, 4),
        "stop_checkpoint_seconds": round(with_save - e2e, 4),
        "e2e_clips_per_s": round(e2e_rate, 3), "step_clips_per_s": round(step_rate, 3),
        "e2e_over_step": round(e2e_rate / step_rate, 4),
        "threads": torch.get_num_threads(),
    }


def format_train(result: dict[str, Any]) -> str:
    compiled = ", compiled" if result["compile"] else ""
    return (f"{result['model']} batch {result['batch']} on {result['device']} ({result['num_workers']} workers"
            f"{compiled}): "
            f"trainer {result['e2e_clips_per_s']:.2f} clips/s, isolated step {result['step_clips_per_s']:.2f} "
            f"clips/s, e2e_over_step {result['e2e_over_step']:.3f}")
