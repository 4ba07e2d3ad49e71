"""The training loop shared by every model: ``fit(cfg, out_dir)`` = ``setup_run`` + ``train_one_epoch`` x N.

The loop only speaks the training-step contract (``training_step`` / ``eval_step`` / ``after_update``,
see :mod:`deepfake_ssat.models.ssat`), so SSAT, scratch, MAE pre-training and the multi-view tasks
share it. It checkpoints atomically (``last.pt`` every ``train.save_every_steps`` updates and at each
epoch end, ``best.pt`` on validation), resumes exactly, and under ``torchrun`` runs DDP.
"""
from __future__ import annotations

import csv
import io
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from .. import __version__
from ..config import Config, ConfigError, check_config, config_to_dict, dump_config
from ..data import EpochSampler, SeededItems, TrainingData, build_datasets, manifest_sha256, num_classes
from ..data.images import mixup_fn
from ..data.sampling import class_balance_weights, derive_seed
from ..data.transforms import normalize_clips
from ..data.workers import init_worker
from ..io import atomic_write, atomic_write_json, atomic_write_text, git_revision
from ..metrics import StreamingMetrics
from .build import build_model
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .distributed import DistInfo, all_reduce_sum, barrier, gather_objects, setup_distributed, teardown_distributed
from ..runtime import amp_dtype as choose_amp
from ..runtime import autocast, resolve_device

VAL_MASK_SEED = 1234  # fixed masks for validation reconstruction loss: comparable across epochs
SUM_KEYS = ("loss", "cls", "rec")  # the training loss and its parts, summed over an epoch's micro-steps


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the state before the offending update was saved."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``last.pt`` in ``out_dir`` holds update ``step`` (of ``total``)."""

    def __init__(self, out_dir: Path, step: int | None, total: int) -> None:
        super().__init__(f"{out_dir}: interrupted")
        self.out_dir, self.step, self.total = out_dir, step, total


def carry_best(resume_path: str | Path, out_dir: str | Path) -> None:
    """Resuming into another run folder: copy ``best.pt`` from beside the resumed checkpoint (once), so
    the new run tests the best-on-validation weights even if validation never improves again."""
    source, target = Path(resume_path).parent / "best.pt", Path(out_dir) / "best.pt"
    if source.is_file() and not target.exists() and source.resolve() != target.resolve():
        atomic_write(target, lambda f: f.write(source.read_bytes()))


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                    fused: bool = False) -> torch.optim.Optimizer:
    """AdamW, multi-tensor (``fused``: one fused kernel, CUDA parameters only); no weight decay on 1-D params
    (norms, biases) or ``no_weight_decay()`` names."""
    kernel = {"fused": True} if fused else {"foreach": True}
    return create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay, betas=betas, **kernel)


def adamw_betas(cfg: Config) -> tuple[float, float]:
    """``train.betas``, or by default (0.9, 0.95) for MAE-style pre-training (lam = 0) and (0.9, 0.999)
    otherwise (DeiT recipe, VideoMAE fine-tuning); their range is checked with the config."""
    betas = cfg.train.betas
    if betas is None:
        return (0.9, 0.95) if cfg.ssat.lam == 0 else (0.9, 0.999)
    return float(betas[0]), float(betas[1])


def build_scheduler(optimizer: torch.optim.Optimizer, total_updates: int, warmup_updates: int,
                    min_lr: float) -> CosineLRScheduler:
    """Linear warm-up from ``min_lr`` then cosine to ``min_lr``, stepped per optimizer update."""
    return CosineLRScheduler(
        optimizer, t_initial=max(total_updates, 1), lr_min=min_lr, warmup_t=warmup_updates,
        warmup_lr_init=min_lr, t_in_epochs=False)


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a (nested list / tuple) batch moved to ``device``, uint8 clips normalised there
    (``data.loader.transfer``); anything else (video keys) as is."""
    if isinstance(batch, torch.Tensor):
        batch = batch.to(device, non_blocking=True)
        return normalize_clips(batch) if batch.dtype == torch.uint8 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


class TrainStep(nn.Module):
    """``forward(batch) = model.training_step(batch)``: DDP wraps the whole step, so it syncs gradients
    whatever the step does inside."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.model.training_step(batch)


@torch.no_grad()
def validate(model: nn.Module, dataset: Dataset, batch_size: int, device: torch.device,
             amp_dtype: torch.dtype | None = None, num_workers: int = 0,
             dist: DistInfo = DistInfo()) -> dict[str, float | None]:
    """Mean loss, its parts (``cls`` / ``rec``; None when the model has none) and top-1 accuracy (None
    without logits) over ``dataset`` via ``model.eval_step``; masks are drawn from a fixed seed.

    Under DDP each rank evaluates every ``world_size``-th item and the sums are reduced.
    """
    model.eval()
    if dist.enabled:
        dataset = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        worker_init_fn=init_worker)
    sums = dict.fromkeys(("loss", "cls", "rec", "correct", "count", "has_cls", "has_rec", "has_logits"), 0.0)
    clips: tuple[list, list, list] = ([], [], [])  # video keys, labels, fake probabilities of keyed binary items
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(VAL_MASK_SEED, dist.rank) if dist.enabled else VAL_MASK_SEED)
        for batch in loader:
            batch = to_device(batch, device)
            with autocast(device, amp_dtype):
                loss, parts, logits = model.eval_step(batch)
            n = batch[1].shape[0]
            sums["loss"] += loss.item() * n
            for k, v in parts.items():
                sums[k] += v.item() * n
                sums[f"has_{k}"] = 1.0
            if logits is not None:
                sums["correct"] += (logits.argmax(dim=1) == batch[1]).sum().item()
                sums["has_logits"] = 1.0
                if len(batch) > 2 and logits.shape[1] == 2:  # face clips: (clip, label, video key)
                    clips[0].extend(batch[2])
                    clips[1].extend(batch[1].tolist())
                    clips[2].extend(logits.float().softmax(dim=1)[:, 1].tolist())
            sums["count"] += n
    sums = dict(zip(sums, all_reduce_sum(list(sums.values()), dist, device)))
    count = sums["count"]
    if count == 0:
        raise ValueError("evaluation split is empty")
    return {
        "loss": sums["loss"] / count,
        "cls": sums["cls"] / count if sums["has_cls"] else None,
        "rec": sums["rec"] / count if sums["has_rec"] else None,
        "acc1": 100.0 * sums["correct"] / count if sums["has_logits"] else None,
        "video": _video_metrics(clips, dist),
    }


def _video_metrics(clips: tuple[list, list, list], dist: DistInfo) -> dict | None:
    """Video-level metrics (clip probabilities averaged per video, as evaluation does) over every rank's
    clips; None for items without video keys (images)."""
    parts = gather_objects(clips, dist)
    keys = [k for p in parts for k in p[0]]
    if not keys:
        return None
    metrics = StreamingMetrics()
    metrics.update(keys, [y for p in parts for y in p[1]], [q for p in parts for q in p[2]])
    return metrics.compute()["video"]


@dataclass
class TrainState:
    """Everything beyond module/optimizer state that a resumed run must get back."""
    step: int = 0  # optimizer updates done
    best_metric: float | None = None  # the selection score of best.pt (higher is better)
    best_epoch: int | None = None
    selected_by: str | None = None  # auc | acc | loss | rec: what chose best.pt
    best_value: float | None = None  # that metric's value at best_epoch, as logged
    train_seconds: float = 0.0
    epoch_sums: dict = field(default_factory=lambda: {"loss": 0.0, "cls": 0.0, "rec": 0.0, "n": 0})
    history: list = field(default_factory=list)  # one row per finished epoch


@dataclass
class Run:
    """One training run: what :func:`setup_run` builds and :func:`train_one_epoch` advances."""
    cfg: Config
    out_dir: Path
    dist: DistInfo
    device: torch.device
    amp_dtype: torch.dtype | None
    model: nn.Module  # anything with the training-step contract (models/ssat.py)
    net: nn.Module  # TrainStep(model), DDP-wrapped under torchrun
    datasets: dict[str, TrainingData]
    sampler: EpochSampler
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    scaler: torch.amp.GradScaler
    state: TrainState
    updates_per_epoch: int
    total_updates: int
    meta: dict
    data_sha256: str
    batch_transform: Callable | None = None  # Mixup / CutMix on the device batch
    writer: Any = None  # TensorBoard SummaryWriter on rank 0
    # the last finished update, for a Ctrl-C save and NaN stops: its RNG state, epoch sums and clock
    mark_rng: dict = field(default_factory=dict)
    mark_sums: tuple = ({}, None)
    clock: float = 0.0
    consistent: bool = True  # False while an update is half applied
    saved_step: int | None = None  # the update last.pt holds
    lazy: bool = False  # train.host_sync log: loss sums stay on the device until read_sums
    device_sums: torch.Tensor | None = None  # [loss, cls, rec, micro-steps] not yet added to state.epoch_sums
    read_step: int = 0  # the update at which the sums were last read (and found finite)

    def mark(self) -> None:
        """Remember the last finished update's RNG state and loss sums (host and device side) for a Ctrl-C save."""
        self.mark_rng, self.mark_sums = capture_rng(self.device), (dict(self.state.epoch_sums), self.device_sums)

    def tick(self) -> None:
        """Add the time since the last tick to ``train_seconds``."""
        now = time.perf_counter()
        self.state.train_seconds += now - self.clock
        self.clock = now

    def add_sums(self, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
        """Add one micro-step's loss and parts to the epoch sums: read on the host now (``train.host_sync``
        step: a NaN/inf stops the run before the update), or kept on the device until :meth:`read_sums`."""
        zero = loss.new_zeros((), dtype=torch.float64)
        values = torch.stack([loss.detach().double(), *(parts[k].detach().double() if k in parts else zero
                                                        for k in SUM_KEYS[1:]), zero + 1])
        self.device_sums = values if self.device_sums is None else self.device_sums + values
        if not self.lazy:
            self.read_sums()

    def read_sums(self) -> None:
        """Move the device-side sums into ``state.epoch_sums`` (one host sync); :class:`TrainingDiverged` if a
        loss since the last read was NaN/inf on any rank."""
        if self.device_sums is None:
            return
        values, self.device_sums = self.device_sums.tolist(), None
        if not _finite_everywhere(sum(values[:3]), self.dist, self.device):
            _stop_diverged(self, values)
        sums = self.state.epoch_sums
        for k, v in zip((*SUM_KEYS, "n"), values):
            sums[k] += v
        self.read_step = self.state.step

    def checkpoint(self, name: str, rng: dict) -> None:
        """Collective: every rank's RNG state is gathered; rank 0 writes ``out_dir/name``; all wait for it."""
        self.read_sums()
        rngs = gather_objects(rng, self.dist)
        if self.dist.is_main:
            save_checkpoint(self.out_dir / name, {
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rngs[0], "rng_per_rank": rngs, "train_state": vars(self.state),
                "config": config_to_dict(self.cfg), "meta": self.meta})
        barrier(self.dist)
        if name == "last.pt":
            self.saved_step = self.state.step


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _write_metrics_csv(path: Path, history: list[dict]) -> None:
    if not history:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def data_manifest(datasets: dict[str, TrainingData]) -> dict:
    """What each split reads (video keys, labels, crop files for face clips; sizes and a hash otherwise) + its hash."""
    splits = {name: ds.manifest() for name, ds in datasets.items()}
    return {"sha256": manifest_sha256(splits), "splits": splits}


def fit(cfg: Config, out_dir: str | Path, resume: str | Path | dict | None = None,
        max_steps: int | None = None) -> dict:
    """Train per ``cfg`` into ``out_dir``; resume from checkpoint ``resume`` (a path, or one already
    loaded with :func:`load_checkpoint`) if given.

    ``max_steps`` stops (after checkpointing) once that many updates are done, as if the process
    were stopped there: resuming later gives the same weights as never stopping. Ctrl-C saves
    ``last.pt`` at the last finished update (single process) and raises :class:`TrainingInterrupted`.
    Returns the summary also written to ``out_dir/summary.json``.
    """
    out_dir = Path(out_dir)
    if resume is not None and not isinstance(resume, dict):
        carry_best(resume, out_dir)
    dist, device = setup_distributed(resolve_device(cfg.train.device, "train.device"))
    run = None
    try:
        run = setup_run(cfg, out_dir, resume, dist, device)
        while run.state.step < run.total_updates:
            if train_one_epoch(run, run.state.step // run.updates_per_epoch, max_steps):
                return {"stopped_at_step": run.state.step}
        summary = finish(run)
    except KeyboardInterrupt:
        if run is None:
            raise
        if run.consistent and not dist.enabled:  # a collective save could wait for ranks already gone
            run.state.epoch_sums, run.device_sums = dict(run.mark_sums[0]), run.mark_sums[1]
            run.tick()
            run.checkpoint("last.pt", run.mark_rng)
        raise TrainingInterrupted(out_dir, run.saved_step, run.total_updates) from None
    finally:
        if run is not None and run.writer is not None:
            run.writer.close()
        teardown_distributed(dist)
    return summary


def setup_run(cfg: Config, out_dir: Path, resume: str | Path | dict | None, dist: DistInfo,
              device: torch.device) -> Run:
    """Model, data, optimisation and run folder for ``cfg``; the state of ``resume`` restored if given."""
    t, batch_size = cfg.train, cfg.data.loader.batch_size
    check_config(cfg)  # loaded configs were checked already; this one may have been built or changed in code
    if dist.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    _seed_everything(t.seed)  # identical initial weights on every rank
    model = build_model(cfg, cfg.model.num_classes or num_classes(cfg.data.name, cfg.data.root)).to(device)
    encoder = model.encoder
    datasets = build_datasets(cfg.data, encoder.img_size, encoder.in_chans, encoder.num_frames,
                              views=model.num_views, uint8=_uint8_transfer(cfg, device))
    weights = class_balance_weights(datasets["train"].labels) if cfg.data.loader.balanced else None
    sampler = EpochSampler(len(datasets["train"]), t.seed, weights=weights, rank=dist.rank,
                           world_size=dist.world_size)
    updates_per_epoch = sampler.per_rank() // batch_size // t.accum_steps
    if updates_per_epoch == 0:
        raise ConfigError(
            f"data.loader.batch_size: {batch_size} x train.accum_steps {t.accum_steps} x {dist.world_size} "
            f"processes exceeds the {len(datasets['train'])} training items; lower them")
    total_updates = updates_per_epoch * t.epochs
    lr = t.blr * batch_size * t.accum_steps * dist.world_size / 256
    optimizer = build_optimizer(model, lr, t.weight_decay, adamw_betas(cfg),
                                fused=t.fused_adamw and device.type == "cuda")
    amp_dtype = choose_amp(t.amp, device, "train.amp")
    data_meta = data_manifest(datasets)
    run = Run(cfg=cfg, out_dir=out_dir, dist=dist, device=device, amp_dtype=amp_dtype, model=model, net=model,
              datasets=datasets, sampler=sampler, loader=_train_loader(cfg, datasets["train"], sampler, device),
              optimizer=optimizer,
              scheduler=build_scheduler(optimizer, total_updates, round(t.warmup_epochs * updates_per_epoch),
                                        t.min_lr),
              scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
              state=TrainState(), updates_per_epoch=updates_per_epoch, total_updates=total_updates,
              meta={"version": __version__, "git": git_revision(), "torch": str(torch.__version__),
                    "device": str(device), "world_size": dist.world_size, "data_manifest_sha256": data_meta["sha256"],
                    "extraction": datasets["train"].extraction},
              data_sha256=data_meta["sha256"], batch_transform=_batch_transform(cfg, model),
              lazy=t.host_sync == "log" or (t.host_sync == "auto" and device.type == "cuda"))
    if resume is not None:
        _restore(run, resume)
    else:
        _initialise(run)
    step = TrainStep(model)
    if dist.enabled:
        step = DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                       find_unused_parameters=model.find_unused_parameters)
    # compiled at the first step; around DDP, so that dynamo splits the graph at DDP's gradient buckets and their
    # all-reduce overlaps the backward pass (DDP around a compiled step all-reduces after the whole backward)
    run.net = torch.compile(step) if t.compile else step
    if dist.is_main:
        atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
        atomic_write_json(out_dir / "data_manifest.json", data_meta)
        from torch.utils.tensorboard import SummaryWriter
        run.writer = SummaryWriter(str(out_dir / "tb"), purge_step=run.state.step or None)
        _announce(run, lr)
    run.clock = time.perf_counter()
    run.mark()
    return run


def _uint8_transfer(cfg: Config, device: torch.device) -> bool:
    """Whether face clips cross to the device as uint8 (``data.loader.transfer``; auto: on CUDA)."""
    transfer = cfg.data.loader.transfer
    return transfer == "uint8" or (transfer == "auto" and device.type == "cuda")


def _train_loader(cfg: Config, train_set: Dataset, sampler: EpochSampler, device: torch.device) -> DataLoader:
    """One persistent loader per run (workers kept across epochs, pinned memory on CUDA for non-blocking copies);
    its own generator, so creating an iterator never draws from the global RNG (exact resume)."""
    d = cfg.data.loader
    return DataLoader(
        SeededItems(train_set), batch_size=d.batch_size, sampler=sampler, drop_last=True,
        num_workers=d.num_workers, persistent_workers=d.num_workers > 0, prefetch_factor=d.prefetch_factor,
        pin_memory=device.type == "cuda", worker_init_fn=init_worker,
        generator=torch.Generator().manual_seed(cfg.train.seed))


def _batch_transform(cfg: Config, model: nn.Module) -> Callable | None:
    """timm Mixup / CutMix for ``data.images.mixup`` / ``cutmix`` > 0: ``(x, y, ...) -> (x', soft y, ...)``."""
    d = cfg.data.images
    if d.mixup <= 0 and d.cutmix <= 0:
        return None
    off = "set data.images.mixup=0 data.images.cutmix=0"
    if model.encoder.num_frames is not None:
        raise ConfigError(f"data.images.mixup: Mixup / CutMix are for image batches; {off} for clips")
    if model.num_views > 1:
        raise ConfigError(f"data.images.mixup: Mixup / CutMix mix single-view batches; ssat.aux={cfg.ssat.aux} trains "
                          f"on two views: {off}")
    mix = mixup_fn(model.encoder.num_classes, mixup=d.mixup, cutmix=d.cutmix,
                   label_smoothing=cfg.ssat.label_smoothing)
    return lambda batch: (*mix(batch[0], batch[1]), *batch[2:])


def _restore(run: Run, resume: str | Path | dict) -> None:
    """Weights, optimizer moments, scaler, counters and every rank's RNG from a checkpoint.

    Hyper-parameters (lr, weight decay) come from the config, so ``--opts train.blr=...`` at resume
    acts; the schedule is a pure function of the update count."""
    ckpt = resume if isinstance(resume, dict) else load_checkpoint(resume, map_location=run.device)
    run.model.load_state_dict(ckpt["model"])
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in run.optimizer.param_groups]
    run.optimizer.load_state_dict(ckpt["optimizer"])
    for group, settings in zip(run.optimizer.param_groups, fresh):
        group.update(settings)
    run.scaler.load_state_dict(ckpt["scaler"])
    run.state = TrainState(**ckpt["train_state"])
    run.saved_step = run.state.step
    per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
    restore_rng(per_rank[run.dist.rank] if len(per_rank) == run.dist.world_size else per_rank[0], run.device)


def _initialise(run: Run) -> None:
    """A fresh run: ``train.init_from`` weights, then per-rank seeds (masks and dropout differ across ranks)."""
    t = run.cfg.train
    if t.init_from:
        from .pretrained import load_pretrained
        report = load_pretrained(run.model.encoder, t.init_from)
        run.model.after_weights_loaded()
        if run.dist.is_main:
            print(f"[train] init_from {t.init_from} ({report['format']}): {report['loaded']} tensors; "
                  f"fresh: {', '.join(report['missing']) or 'none'}", flush=True)
    if run.dist.enabled:  # the weights are already identical
        _seed_everything(derive_seed(t.seed, run.dist.rank))


def _announce(run: Run, lr: float) -> None:
    for split, ds in run.datasets.items():
        print(f"[data] {split}: {ds.describe()}", flush=True)
    model, dist, t = run.model, run.dist, run.cfg.train
    print(f"[train] {run.out_dir}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
          f"{model.describe()}, lam={model.lam}, device={run.device}"
          f"{f' x {dist.world_size} processes' if dist.enabled else ''}, lr={lr:.2e}, "
          f"{run.updates_per_epoch} updates/epoch x {t.epochs} epochs"
          + (f", resuming at update {run.state.step}" if run.state.step else ""), flush=True)


def train_one_epoch(run: Run, epoch: int, max_steps: int | None = None) -> bool:
    """Run ``epoch`` from wherever ``run.state.step`` is in it; True when ``max_steps`` stopped the run."""
    cfg, t, state = run.cfg, run.cfg.train, run.state
    first_micro = (state.step % run.updates_per_epoch) * t.accum_steps
    run.sampler.set_epoch(epoch, start=first_micro * cfg.data.loader.batch_size)
    run.model.train()
    run.clock = time.perf_counter()
    run.mark()
    bar = tqdm(total=run.updates_per_epoch, initial=state.step % run.updates_per_epoch, leave=False,
               disable=None if run.dist.is_main else True, desc=f"epoch {epoch + 1}/{t.epochs}")
    for micro, batch in enumerate(run.loader, start=first_micro):
        if micro >= run.updates_per_epoch * t.accum_steps:
            break
        syncing = (micro + 1) % t.accum_steps == 0
        batch = to_device(batch, run.device)
        if run.batch_transform is not None:
            batch = run.batch_transform(batch)  # y: soft targets [B, num_classes]
        with _no_sync(run.net, syncing), autocast(run.device, run.amp_dtype):
            loss, parts = run.net(batch)
        run.add_sums(loss, parts)  # train.host_sync step: read here, a NaN/inf stops before the update
        with _no_sync(run.net, syncing):
            run.scaler.scale(loss / t.accum_steps).backward()
        if not syncing:
            continue
        _update(run, loss, parts)
        bar.update(1)
        stopping = max_steps is not None and state.step >= max_steps
        if state.step % run.updates_per_epoch == 0:
            bar.close()
            end_epoch(run, epoch)
        elif stopping or (t.save_every_steps and state.step % t.save_every_steps == 0):
            run.tick()
            run.checkpoint("last.pt", run.mark_rng)
        if stopping:
            bar.close()
            return True
    bar.close()
    return False


def _update(run: Run, loss: torch.Tensor, parts: dict[str, torch.Tensor]) -> None:
    """One optimizer update from the accumulated gradients; then the model's ``after_update`` and logs."""
    t, state = run.cfg.train, run.state
    run.consistent = False  # until state.step moves on, weights and state disagree
    run.scheduler.step_update(state.step)
    if t.clip_grad is not None:
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), t.clip_grad)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.optimizer.zero_grad(set_to_none=True)
    run.model.after_update(state.step / run.total_updates)
    state.step += 1
    run.consistent = True
    run.mark()
    if state.step % t.log_every_steps:
        return
    run.read_sums()  # train.host_sync log: the loss is read here, on every rank
    if run.writer is not None:
        lr = run.optimizer.param_groups[0]["lr"]
        run.writer.add_scalar("train/loss", loss.item(), state.step)
        run.writer.add_scalar("train/lr", lr, state.step)
        for k, v in parts.items():
            run.writer.add_scalar(f"train/{k}", v.item(), state.step)


def _stop_diverged(run: Run, sums: list[float]) -> None:
    """Raise :class:`TrainingDiverged` (every rank stops together). ``train.host_sync`` step: the state before
    this update is saved first; log: the weights may already hold the bad updates, so nothing is saved."""
    epoch = run.state.step // run.updates_per_epoch + 1
    fix = "resume with a lower train.blr or a train.clip_grad"
    if run.lazy:
        kept = f"{run.out_dir / 'last.pt'} holds update {run.saved_step}" if run.saved_step is not None else \
            "no last.pt was saved yet"
        raise TrainingDiverged(
            f"loss became NaN/inf at epoch {epoch} between updates {run.read_step} and {run.state.step} "
            f"(train.host_sync=log reads it every train.log_every_steps updates); nothing saved, {kept}; {fix} "
            f"(train.host_sync=step stops before the first bad update)")
    run.tick()
    run.checkpoint("last.pt", run.mark_rng)
    raise TrainingDiverged(
        f"loss is {sums[0]} at epoch {epoch}, update {run.state.step} "
        f"({', '.join(f'{k}={v:.4g}' for k, v in zip(SUM_KEYS[1:], sums[1:3]))}); state before this update saved "
        f"to {run.out_dir / 'last.pt'}; {fix}")


def _no_sync(net: nn.Module, syncing: bool):
    """DDP (compiled or not): skip the gradient all-reduce on accumulation micro-steps."""
    ddp = getattr(net, "_orig_mod", net)  # torch.compile's wrapper keeps the module it compiled there
    return ddp.no_sync() if isinstance(ddp, DistributedDataParallel) and not syncing else nullcontext()


def _finite_everywhere(value: float, dist: DistInfo, device: torch.device) -> bool:
    """Whether the loss is finite on every rank (all ranks must stop together)."""
    bad = 0.0 if math.isfinite(value) else 1.0
    return all_reduce_sum([bad], dist, device)[0] == 0


def end_epoch(run: Run, epoch: int) -> None:
    """Validate, log the epoch row (metrics.csv, TensorBoard), keep ``best.pt`` on validation, save ``last.pt``."""
    cfg, state, dist = run.cfg, run.state, run.dist
    run.consistent = False  # validation changes the state: saved only at the end
    run.read_sums()
    run.tick()
    val = validate(run.model, run.datasets["val"], cfg.data.loader.batch_size, run.device, run.amp_dtype,
                   cfg.data.loader.num_workers, dist)
    sums = state.epoch_sums
    n_loss, n_cls, n_rec, n = all_reduce_sum([sums["loss"], sums["cls"], sums["rec"], sums["n"]], dist, run.device)
    n = max(n, 1)
    row = {
        "epoch": epoch + 1, "step": state.step, "lr": run.optimizer.param_groups[0]["lr"],
        "train_loss": n_loss / n, "train_cls": n_cls / n, "train_rec": n_rec / n,
        "val_loss": val["loss"], "val_acc1": val["acc1"], "val_rec": val["rec"],
        **_video_row(val["video"]),
        "train_seconds": round(state.train_seconds, 3),
    }
    state.history.append(row)
    state.epoch_sums = {"loss": 0.0, "cls": 0.0, "rec": 0.0, "n": 0}
    name, value, score = select_metric(val, cfg.train.select)
    if state.best_metric is None or score > state.best_metric:
        state.best_metric, state.best_epoch, state.selected_by, state.best_value = score, epoch + 1, name, value
        run.checkpoint("best.pt", capture_rng(run.device))
    if dist.is_main:
        for k in [k for k in row if k.startswith("val_")]:
            if row[k] is not None:
                run.writer.add_scalar(f"val/{k[4:]}", row[k], state.step)
        run.writer.flush()
        _write_metrics_csv(run.out_dir / "metrics.csv", state.history)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
        print(f"[train] epoch {epoch + 1}/{cfg.train.epochs} {shown}", flush=True)
    run.mark()
    run.checkpoint("last.pt", run.mark_rng)
    run.consistent = True
    run.clock = time.perf_counter()


def _video_row(video: dict | None) -> dict:
    """The video-level validation columns of metrics.csv (none for image datasets)."""
    if video is None:
        return {}
    return {"val_video_acc": video["acc"], "val_auc": video["auc"], "val_log_loss": video["log_loss"],
            "val_bal_acc": video["balanced_acc"]}


def select_metric(val: dict, select: str) -> tuple[str, float, float]:
    """``(name, value, score)`` of the validation metric that picks ``best.pt`` (``score``: higher is
    better) for ``train.select``; see :class:`~deepfake_ssat.config.TrainConfig`."""
    video = val["video"]
    if val["acc1"] is None:  # no classifier (MAE pre-training): the reconstruction loss
        return "rec", val["rec"], -val["rec"]
    if select == "auto":
        select = "auc" if video is not None and video["auc"] is not None else "acc"
    if select == "auc":
        if video is None or video["auc"] is None:
            raise ConfigError("train.select: auc needs face clips of both classes in the validation split; "
                              "use train.select=acc or loss")
        return "auc", video["auc"], video["auc"]
    if select == "acc":
        value = video["acc"] if video is not None else val["acc1"]
        return "acc", value, value
    value = video["log_loss"] if video is not None else val["loss"]
    return "loss", value, -value


def finish(run: Run) -> dict:
    """Test the best-on-validation weights (never select on test); write and return ``summary.json``."""
    cfg, state, dist = run.cfg, run.state, run.dist
    args = (cfg.data.loader.batch_size, run.device, run.amp_dtype, cfg.data.loader.num_workers, dist)
    test = perturbed = None
    tested = "best"
    if "test" in run.datasets:
        if (run.out_dir / "best.pt").is_file():
            run.model.load_state_dict(load_checkpoint(run.out_dir / "best.pt", map_location=run.device)["model"])
        else:  # resumed into a new folder without the old run's best.pt: say so, never stop here
            tested = "last"
            if dist.is_main:
                print(f"[train] warning: {run.out_dir / 'best.pt'} not found (the resumed run's best.pt was not "
                      f"beside its checkpoint); testing the final weights", flush=True)
        test = validate(run.model, run.datasets["test"], *args)
    if "test_perturbed" in run.datasets:
        perturbed = validate(run.model, run.datasets["test_perturbed"], *args)
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else {}
    video = test["video"] if test else None
    summary = {
        "best_epoch": state.best_epoch,
        "selected_by": state.selected_by,
        "best_val_metric": state.best_value,
        "best_val_acc1": best_row.get("val_acc1"),
        "best_val_rec": best_row.get("val_rec"),
        "test_acc1": test["acc1"] if test else None,
        "test_loss": test["loss"] if test else None,
        "tested_weights": tested if test else None,
        "train_seconds": round(state.train_seconds, 3),
        "steps": state.step,
        "epochs": cfg.train.epochs,
        "world_size": dist.world_size,
        **({"test_acc1_perturbed": perturbed["acc1"]} if perturbed else {}),
        **({"test_video": {k: video[k] for k in ("acc", "auc", "log_loss", "eer", "balanced_acc", "n")}}
           if video else {}),
        "data_manifest_sha256": run.data_sha256,
    }
    if dist.is_main:
        atomic_write_json(run.out_dir / "summary.json", summary)
    return summary
