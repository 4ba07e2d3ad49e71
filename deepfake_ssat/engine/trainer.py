"""The training engine shared by image and video modes.

``fit(cfg, out_dir)`` trains an :class:`~deepfake_ssat.models.SSAT` model, checkpointing atomically
(``last.pt`` every ``train.save_every_steps`` updates and at each epoch end, ``best.pt`` on the
validation split), and resumes exactly from any of its checkpoints. Under ``torchrun`` it runs
DDP (one process per device; ``data.batch_size`` per process), reduces metrics over the ranks and
checkpoints on rank 0.

Image mode: ``ssat.aux`` simclr / dino train an :class:`SSATMultiView` on batches of two views
per image (``rec`` in the logs is then that task's loss) and step the DINO teacher's EMA after
every update; ``data.mixup`` / ``data.cutmix`` mix the (single-view) batches with timm's Mixup;
``data.eval_perturbed`` adds ``test_acc1_perturbed`` to the summary.
"""
from __future__ import annotations

import csv
import hashlib
import io
import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from .. import __version__
from ..config import Config, ConfigError, config_to_dict, dump_config
from ..data import EpochSampler, SeededItems, build_datasets, manifest_sha256, num_classes
from ..data.sampling import class_balance_weights, derive_seed
from ..data.images import mixup_fn
from ..models import SSAT
from ..models.aux_tasks import SSATMultiView
from .build import build_model
from ..io import atomic_write, atomic_write_json, atomic_write_text, git_revision
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .runtime import amp_dtype as choose_amp, autocast, resolve_device
from .distributed import DistInfo, all_reduce_sum, barrier, gather_objects, setup_distributed, teardown_distributed

VAL_MASK_SEED = 1234  # fixed masks for validation reconstruction loss: comparable across epochs


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


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW (0.9, 0.95), multi-tensor; no weight decay on 1-D params (norms, biases) or ``no_weight_decay()`` names."""
    return create_optimizer_v2(model, opt="adamw", lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95),
                               foreach=True)


def build_scheduler(optimizer: torch.optim.Optimizer, total_updates: int, warmup_updates: int,
                    min_lr: float) -> CosineLRScheduler:
    """Linear warm-up from ``min_lr`` then cosine to ``min_lr``, stepped per optimizer update."""
    return CosineLRScheduler(
        optimizer, t_initial=max(total_updates, 1), lr_min=min_lr, warmup_t=warmup_updates,
        warmup_lr_init=min_lr, t_in_epochs=False)


@torch.no_grad()
def evaluate(model: SSAT, dataset: Dataset, batch_size: int, device: torch.device,
             amp_dtype: torch.dtype | None = None, num_workers: int = 0,
             dist: DistInfo = DistInfo()) -> dict[str, float | None]:
    """Mean joint loss, its parts and top-1 accuracy over ``dataset`` (masks drawn from a fixed seed).

    Under DDP each rank evaluates every ``world_size``-th item and the sums are reduced.
    """
    model.eval()
    if dist.enabled:
        dataset = Subset(dataset, range(dist.rank, len(dataset), dist.world_size))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    sums = {"loss": 0.0, "cls": 0.0, "rec": 0.0}
    correct, count = 0, 0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(derive_seed(VAL_MASK_SEED, dist.rank) if dist.enabled else VAL_MASK_SEED)
        for batch in loader:
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            with autocast(device, amp_dtype):
                if isinstance(model, SSATMultiView):  # classification only: the auxiliary task needs 2 views
                    logits = model.predict(x)
                    loss = F.cross_entropy(logits.float(), y, label_smoothing=model.label_smoothing)
                    parts = {"cls": loss}
                else:
                    out = model(x)
                    loss, parts = model.loss(out, x, y)
                    logits = out.logits
            n = y.shape[0]
            sums["loss"] += loss.item() * n
            for k, v in parts.items():
                sums[k] += v.item() * n
            if logits is not None:
                correct += (logits.argmax(dim=1) == y).sum().item()
            count += n
    total = all_reduce_sum([sums["loss"], sums["cls"], sums["rec"], correct, count], dist, device)
    sums["loss"], sums["cls"], sums["rec"], correct, count = total
    if count == 0:
        raise ValueError("evaluation split is empty")
    return {
        "loss": sums["loss"] / count,
        "cls": sums["cls"] / count if model.lam > 0 else None,
        "rec": sums["rec"] / count if getattr(model, "decoder", None) is not None else None,
        "acc1": 100.0 * correct / count if model.lam > 0 else None,
    }


@dataclass
class TrainState:
    """Everything beyond module/optimizer state that a resumed run must get back."""
    step: int = 0  # optimizer updates done
    best_metric: float | None = None  # val acc1 (higher is better) or -val rec loss for lam = 0
    best_epoch: int | None = None
    train_seconds: float = 0.0
    epoch_sums: dict = field(default_factory=lambda: {"loss": 0.0, "cls": 0.0, "rec": 0.0, "n": 0})
    history: list = field(default_factory=list)  # one row per finished epoch


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


def data_manifest(datasets: dict[str, Dataset]) -> dict:
    """What each split reads (video keys, labels, crop files for face clips; sizes otherwise) + its hash."""
    splits = {}
    for name, ds in datasets.items():
        if hasattr(ds, "manifest"):
            splits[name] = ds.manifest()
        elif hasattr(ds, "images"):  # in-memory tensors (digits): fingerprint of the split's data
            digest = hashlib.sha256(ds.images.numpy().tobytes() + ds.labels.numpy().tobytes()).hexdigest()
            splits[name] = [{"items": len(ds), "sha256": digest}]
        else:
            splits[name] = [{"items": len(ds)}]
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
    t = cfg.train
    dist, device = setup_distributed(resolve_device(t.device, "train.device"))
    try:
        return _fit(cfg, out_dir, resume, max_steps, dist, device)
    finally:
        teardown_distributed(dist)


def _fit(cfg: Config, out_dir: Path, resume, max_steps: int | None, dist: DistInfo, device: torch.device) -> dict:
    t = cfg.train
    main = dist.is_main
    amp_dtype = choose_amp(t.amp, device)
    if t.accum_steps < 1 or cfg.data.batch_size < 1 or t.epochs < 1:
        raise ConfigError("train.accum_steps, data.batch_size and train.epochs must be >= 1")
    if not (math.isfinite(t.blr) and t.blr > 0):
        raise ConfigError(f"train.blr: must be a positive number, got {t.blr}")
    if t.clip_grad is not None and not t.clip_grad > 0:
        raise ConfigError(f"train.clip_grad: must be a positive gradient norm or null (no clipping), got {t.clip_grad}")
    if not t.warmup_epochs >= 0:
        raise ConfigError(f"train.warmup_epochs: must be >= 0, got {t.warmup_epochs}")
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)

    _seed_everything(t.seed)  # identical initial weights on every rank
    n_classes = cfg.model.num_classes or num_classes(cfg.data.name, cfg.data.root)
    model = build_model(cfg, n_classes).to(device)
    encoder = model.encoder
    multiview = isinstance(model, SSATMultiView)
    datasets = build_datasets(cfg.data, encoder.img_size, encoder.in_chans, getattr(encoder, "num_frames", None),
                              views=2 if multiview else 1)
    mixup = _build_mixup(cfg, n_classes, multiview, video=getattr(encoder, "num_frames", None) is not None)
    train_set = datasets["train"]
    weights = None
    if cfg.data.balanced:
        if getattr(train_set, "labels", None) is None:
            raise ConfigError(f"data.balanced: dataset {cfg.data.name} has no per-item labels to balance")
        weights = class_balance_weights(train_set.labels)
    sampler = EpochSampler(len(train_set), t.seed, weights=weights, rank=dist.rank, world_size=dist.world_size)
    micro_per_epoch = sampler.per_rank() // cfg.data.batch_size
    updates_per_epoch = micro_per_epoch // t.accum_steps
    if updates_per_epoch == 0:
        raise ConfigError(
            f"data.batch_size: {cfg.data.batch_size} x train.accum_steps {t.accum_steps} x {dist.world_size} "
            f"processes exceeds the {len(train_set)} training items; lower them")
    total_updates = updates_per_epoch * t.epochs
    lr = t.blr * cfg.data.batch_size * t.accum_steps * dist.world_size / 256
    optimizer = build_optimizer(model, lr, t.weight_decay)
    scheduler = build_scheduler(optimizer, total_updates, round(t.warmup_epochs * updates_per_epoch), t.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    state = TrainState()
    data_meta = data_manifest(datasets)

    if resume is not None:
        ckpt = resume if isinstance(resume, dict) else load_checkpoint(resume, map_location=device)
        model.load_state_dict(ckpt["model"])
        # Moments come from the checkpoint, hyper-parameters (lr, weight decay) from the config, so a
        # resume with --opts train.blr=... acts; the schedule is a pure function of the update count.
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        optimizer.load_state_dict(ckpt["optimizer"])
        for group, settings in zip(optimizer.param_groups, fresh):
            group.update(settings)
        scaler.load_state_dict(ckpt["scaler"])
        state = TrainState(**ckpt["train_state"])
        per_rank = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        restore_rng(per_rank[dist.rank] if len(per_rank) == dist.world_size else per_rank[0])
    else:
        if t.init_from:
            from .pretrained import load_pretrained
            report = load_pretrained(encoder, t.init_from)
            if main:
                print(f"[train] init_from {t.init_from} ({report['format']}): {report['loaded']} tensors; "
                      f"fresh: {', '.join(report['missing']) or 'none'}", flush=True)
            if multiview:
                model.init_teacher()  # DINO: the teacher starts from the loaded encoder
        if dist.enabled:  # masks and dropout differ across ranks (the weights are already identical)
            _seed_everything(derive_seed(t.seed, dist.rank))
    meta = {"version": __version__, "git": git_revision(), "torch": str(torch.__version__), "device": str(device),
            "world_size": dist.world_size, "data_manifest_sha256": data_meta["sha256"]}
    if main:
        atomic_write_text(out_dir / "config.yaml", dump_config(cfg))
        atomic_write_json(out_dir / "data_manifest.json", data_meta)

    def checkpoint(path: Path, rng: dict) -> None:
        """Collective: every rank's RNG state is gathered; rank 0 writes; all wait for the file."""
        rngs = gather_objects(rng, dist)
        if main:
            save_checkpoint(path, {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rngs[0],
                "rng_per_rank": rngs,
                "train_state": vars(state),
                "config": config_to_dict(cfg),
                "meta": meta,
            })
        barrier(dist)

    # find_unused_parameters: with lam = 0 the classifier head gets no gradient, nor does the mask token
    # of Swin / CvT without a masked pass (scratch, SimCLR, DINO)
    idle_mask_token = hasattr(encoder, "mask_token") and (multiview or model.decoder is None)
    net = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None,
                                  find_unused_parameters=model.lam == 0 or idle_mask_token) if dist.enabled else model
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out_dir / "tb"), purge_step=state.step if state.step else None)
    # Its own generator: creating an iterator must not draw from the global RNG (exact resume).
    loader = DataLoader(
        SeededItems(train_set), batch_size=cfg.data.batch_size, sampler=sampler, drop_last=True,
        num_workers=cfg.data.num_workers, persistent_workers=cfg.data.num_workers > 0,
        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(t.seed))
    if main:
        for split, ds in datasets.items():
            if hasattr(ds, "describe"):
                print(f"[data] {split}: {ds.describe()}", flush=True)
        aux = f"aux={cfg.ssat.aux}" if multiview else f"decoder={'yes' if model.decoder is not None else 'no'}"
        print(f"[train] {out_dir}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params, "
              f"{aux}, lam={model.lam}, device={device}"
              f"{f' x {dist.world_size} processes' if dist.enabled else ''}, lr={lr:.2e}, "
              f"{updates_per_epoch} updates/epoch x {t.epochs} epochs"
              + (f", resuming at update {state.step}" if state.step else ""), flush=True)

    saved_step = state.step if resume is not None else None  # the update that last.pt holds
    between_updates = True  # Ctrl-C here can save the state of the last finished update
    start, rng_at_update, sums_at_update = time.perf_counter(), capture_rng(), dict(state.epoch_sums)
    try:
        while state.step < total_updates:
            epoch = state.step // updates_per_epoch
            first_micro = (state.step % updates_per_epoch) * t.accum_steps
            sampler.set_epoch(epoch, start=first_micro * cfg.data.batch_size)
            model.train()
            start = time.perf_counter()
            rng_at_update, sums_at_update = capture_rng(), dict(state.epoch_sums)
            bar = tqdm(total=updates_per_epoch, initial=state.step % updates_per_epoch, disable=None if main else True,
                       desc=f"epoch {epoch + 1}/{t.epochs}", leave=False)
            for micro, batch in enumerate(loader, start=first_micro):
                if micro >= updates_per_epoch * t.accum_steps:
                    break
                syncing = (micro + 1) % t.accum_steps == 0
                if multiview:  # ([view1, view2], labels): SimCLR / DINO
                    views = [v.to(device, non_blocking=True) for v in batch[0]]
                    y = batch[1].to(device, non_blocking=True)
                    with _no_sync(net, syncing), autocast(device, amp_dtype):
                        loss, parts = net(views, y)
                    parts = {"cls": parts["cls"], "rec": parts["aux"]}  # logged as rec: the auxiliary loss
                else:
                    x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
                    if mixup is not None:
                        x, y = mixup(x, y)  # y: soft targets [B, num_classes]
                    with _no_sync(net, syncing), autocast(device, amp_dtype):
                        out = net(x)
                        loss, parts = model.loss(out, x, y)
                loss_value = loss.item()
                if not _finite_everywhere(loss_value, dist, device):
                    state.train_seconds += time.perf_counter() - start
                    checkpoint(out_dir / "last.pt", rng_at_update)
                    raise TrainingDiverged(
                        f"loss is {loss_value} at epoch {epoch + 1}, update {state.step} "
                        f"({', '.join(f'{k}={v.item():.4g}' for k, v in parts.items())}); state before this "
                        f"update saved to {out_dir / 'last.pt'}; resume with a lower train.blr or a "
                        f"train.clip_grad")
                with _no_sync(net, syncing):
                    scaler.scale(loss / t.accum_steps).backward()
                sums = state.epoch_sums
                sums["n"] += 1
                sums["loss"] += loss_value
                for k, v in parts.items():
                    sums[k] += v.item()
                if not syncing:
                    continue
                between_updates = False  # from here until state.step moves on, weights and state disagree
                scheduler.step_update(state.step)
                if t.clip_grad is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if multiview:  # DINO teacher EMA, momentum ssat.dino_ema -> 1 on a cosine (SimCLR: nothing)
                    progress = math.cos(math.pi * state.step / total_updates)
                    model.update_teacher(1.0 - (1.0 - cfg.ssat.dino_ema) * 0.5 * (1.0 + progress))
                state.step += 1
                between_updates = True
                bar.update(1)
                current_lr = optimizer.param_groups[0]["lr"]
                if writer is not None and state.step % t.log_every_steps == 0:
                    bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{current_lr:.2e}")
                    writer.add_scalar("train/loss", loss_value, state.step)
                    writer.add_scalar("train/lr", current_lr, state.step)
                    for k, v in parts.items():
                        writer.add_scalar(f"train/{k}", v.item(), state.step)
                rng_at_update, sums_at_update = capture_rng(), dict(state.epoch_sums)
                end_of_epoch = state.step % updates_per_epoch == 0
                stopping = max_steps is not None and state.step >= max_steps
                if end_of_epoch:
                    between_updates = False  # validation changes the state: saved only at the end
                    state.train_seconds += time.perf_counter() - start
                    _end_epoch(model, datasets, cfg, device, amp_dtype, state, epoch, current_lr, writer,
                               out_dir, checkpoint, dist)
                    rng_at_update, sums_at_update = capture_rng(), dict(state.epoch_sums)
                    checkpoint(out_dir / "last.pt", rng_at_update)
                    saved_step, between_updates = state.step, True
                    start = time.perf_counter()
                elif stopping or (t.save_every_steps and state.step % t.save_every_steps == 0):
                    state.train_seconds += time.perf_counter() - start
                    start = time.perf_counter()
                    checkpoint(out_dir / "last.pt", rng_at_update)
                    saved_step = state.step
                if stopping:
                    bar.close()
                    return {"stopped_at_step": state.step}
            bar.close()
    except KeyboardInterrupt:
        if between_updates and not dist.enabled:  # a collective save could wait for ranks already gone
            state.epoch_sums = sums_at_update
            state.train_seconds += time.perf_counter() - start
            checkpoint(out_dir / "last.pt", rng_at_update)
            saved_step = state.step
        raise TrainingInterrupted(out_dir, saved_step, total_updates) from None
    finally:
        if writer is not None:
            writer.close()

    summary = _finish(model, datasets, cfg, device, amp_dtype, state, out_dir, dist)
    summary["data_manifest_sha256"] = data_meta["sha256"]
    if main:
        atomic_write_json(out_dir / "summary.json", summary)
    return summary


def _build_mixup(cfg: Config, n_classes: int, multiview: bool, video: bool):
    """timm Mixup / CutMix for ``data.mixup`` / ``data.cutmix`` > 0 (label smoothing moves into its targets)."""
    d = cfg.data
    if d.mixup <= 0 and d.cutmix <= 0:
        return None
    if video:
        raise ConfigError("data.mixup: Mixup / CutMix are for image batches; set data.mixup=0 data.cutmix=0 for clips")
    if multiview:
        raise ConfigError(f"data.mixup: Mixup / CutMix mix single-view batches; ssat.aux={cfg.ssat.aux} trains on "
                          f"two views: set data.mixup=0 data.cutmix=0")
    if d.batch_size % 2:
        raise ConfigError(f"data.batch_size: Mixup / CutMix pair the items of a batch; {d.batch_size} is odd")
    return mixup_fn(n_classes, mixup=d.mixup, cutmix=d.cutmix, label_smoothing=cfg.ssat.label_smoothing)


def _no_sync(net: nn.Module, syncing: bool):
    """DDP: skip the gradient all-reduce on accumulation micro-steps."""
    return net.no_sync() if isinstance(net, DistributedDataParallel) and not syncing else nullcontext()


def _finite_everywhere(value: float, dist: DistInfo, device: torch.device) -> bool:
    """Whether the loss is finite on every rank (all ranks must stop together)."""
    bad = 0.0 if math.isfinite(value) else 1.0
    return all_reduce_sum([bad], dist, device)[0] == 0


def _end_epoch(model, datasets, cfg, device, amp_dtype, state: TrainState, epoch: int, lr: float, writer,
               out_dir: Path, checkpoint, dist: DistInfo) -> None:
    """Validate, log the epoch row (metrics.csv, TensorBoard), keep ``best.pt`` on validation."""
    val = evaluate(model, datasets["val"], cfg.data.batch_size, device, amp_dtype, cfg.data.num_workers, dist)
    sums = state.epoch_sums
    n_loss, n_cls, n_rec, n = all_reduce_sum([sums["loss"], sums["cls"], sums["rec"], sums["n"]], dist, device)
    n = max(n, 1)
    row = {
        "epoch": epoch + 1, "step": state.step, "lr": lr,
        "train_loss": n_loss / n, "train_cls": n_cls / n, "train_rec": n_rec / n,
        "val_loss": val["loss"], "val_acc1": val["acc1"], "val_rec": val["rec"],
        "train_seconds": round(state.train_seconds, 3),
    }
    state.history.append(row)
    state.epoch_sums = {"loss": 0.0, "cls": 0.0, "rec": 0.0, "n": 0}
    metric = val["acc1"] if val["acc1"] is not None else -val["rec"]
    if state.best_metric is None or metric > state.best_metric:
        state.best_metric, state.best_epoch = metric, epoch + 1
        checkpoint(out_dir / "best.pt", capture_rng())
    if not dist.is_main:
        return
    for k in ("val_loss", "val_acc1", "val_rec"):
        if row[k] is not None:
            writer.add_scalar(f"val/{k[4:]}", row[k], state.step)
    writer.flush()
    _write_metrics_csv(out_dir / "metrics.csv", state.history)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if isinstance(v, float))
    print(f"[train] epoch {epoch + 1}/{cfg.train.epochs} {shown}", flush=True)


def _finish(model: SSAT, datasets, cfg: Config, device, amp_dtype, state: TrainState, out_dir: Path,
            dist: DistInfo) -> dict:
    """Test the best-on-validation weights (never select on test) and summarise the run."""
    test = perturbed = None
    tested = "best"
    if "test" in datasets:
        if (out_dir / "best.pt").is_file():
            model.load_state_dict(load_checkpoint(out_dir / "best.pt", map_location=device)["model"])
        else:  # resumed into a new folder without the old run's best.pt: say so, never stop here
            tested = "last"
            if dist.is_main:
                print(f"[train] warning: {out_dir / 'best.pt'} not found (the resumed run's best.pt was not "
                      f"beside its checkpoint); testing the final weights", flush=True)
        test = evaluate(model, datasets["test"], cfg.data.batch_size, device, amp_dtype, cfg.data.num_workers,
                        dist)
    if "test_perturbed" in datasets:
        perturbed = evaluate(model, datasets["test_perturbed"], cfg.data.batch_size, device, amp_dtype,
                             cfg.data.num_workers, dist)
    best_row = state.history[state.best_epoch - 1] if state.best_epoch else {}
    extra = {"test_acc1_perturbed": perturbed["acc1"]} if perturbed else {}
    return {
        "best_epoch": state.best_epoch,
        "best_val_acc1": best_row.get("val_acc1"),
        "best_val_rec": best_row.get("val_rec"),
        "test_acc1": test["acc1"] if test else None,
        "test_loss": test["loss"] if test else None,
        "tested_weights": tested if test else None,
        "train_seconds": round(state.train_seconds, 3),
        "steps": state.step,
        "epochs": cfg.train.epochs,
        "world_size": dist.world_size,
        **extra,
    }
