"""The paper's FF++ protocols (Table 8) on extracted FF++ face crops: zero-shot and cross-manipulation.

Clips [B, C, T, H, W] are streamed through the model and only (video, label, fake probability) is kept per
clip (:func:`score_dataset`); video-level metrics, tables, ROC curves and prediction CSVs are built from those.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..config import Config, ConfigError, load_config
from ..data import FaceClipDataset, build_face_clips
from ..engine.runtime import amp_dtype, autocast
from ..engine.weights import load_inference_model
from ..faces.datasets import FFPP_METHODS, FFPP_PAPER_METHODS
from ..metrics import StreamingMetrics
from .report import results_table, roc_png, write_predictions_csv, write_results


class NonFiniteScores(ValueError):
    """The model gave NaN / inf logits for some clips (broken or corrupted weights).

    It stops the evaluation with one line naming the checkpoint and a video: a NaN score never reaches
    the metrics, the table or the predictions."""


@torch.no_grad()
def score_dataset(encoder: torch.nn.Module, dataset: FaceClipDataset, device: torch.device, batch_size: int = 16,
                  num_workers: int = 0, metrics: StreamingMetrics | None = None) -> StreamingMetrics:
    """Fake probability (softmax class 1) of every clip of ``dataset``, accumulated by video key.

    Raises :class:`NonFiniteScores` at the first batch with a NaN / inf logit (nothing of it is added).
    """
    metrics = metrics if metrics is not None else StreamingMetrics()
    encoder.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    for x, y, keys in loader:
        with autocast(device, amp_dtype("bf16", device)):
            logits = encoder(x.to(device, non_blocking=True)).float()
        finite = torch.isfinite(logits).all(dim=1)
        if not bool(finite.all()):
            nan = torch.isnan(logits).any(dim=1)
            kinds = " and ".join(k for k, n in (("NaN", int(nan.sum())), ("inf", int((~finite & ~nan).sum()))) if n)
            first = keys[int(torch.nonzero(~finite)[0, 0])]
            raise NonFiniteScores(f"model output is not finite ({kinds}) for {int((~finite).sum())} of the "
                                  f"{len(keys)} clips of a batch (first: video {first}); the weights may be corrupted")
        metrics.update(list(keys), y, logits.softmax(dim=1)[:, 1].cpu())
    return metrics


def _test_split(root: Path, cfg: Config, methods: list[str], splits_dir: Path | None,
                compression: str) -> FaceClipDataset:
    return build_face_clips(
        "ffpp", root, cfg.model.img_size, cfg.model.num_frames, frame_step=cfg.data.frame_step, augment=False,
        eval_clips=cfg.data.eval_clips, compression=compression, methods=methods, splits_dir=splits_dir,
        only=("test",))["test"]


def _model_geometry(encoder: torch.nn.Module, cfg: Config) -> Config:
    """``cfg`` with the encoder's actual img_size / num_frames filled in (configs may leave them unset)."""
    model = dataclasses.replace(cfg.model, img_size=encoder.img_size, num_frames=encoder.num_frames)
    return dataclasses.replace(cfg, model=model)


def _present_methods(root: Path, wanted: list[str] | None) -> list[str]:
    present = sorted({p.parent.parent.parent.name for p in root.glob("ffpp/*/*/*/manifest.json")} & set(FFPP_METHODS))
    if not present:
        raise ConfigError(f"--data-root: {root} holds no extracted FF++ manipulations (ffpp/<Method>/<c>/<id>); "
                          f"run tools/extract_faces.py <FF++ root> --out {root}")
    if wanted is None:
        return [m for m in FFPP_PAPER_METHODS if m in present]
    missing = [m for m in wanted if m not in present]
    if missing:
        raise ConfigError(f"--leave-out: {', '.join(missing)}: not extracted under {root} (have {', '.join(present)})")
    return wanted


def zero_shot(checkpoint: Path, root: Path, out: Path, name: str, splits_dir: Path | None = None,
              compression: str = "c23", device: torch.device = torch.device("cpu"), batch_size: int = 16,
              num_workers: int = 0, strategy: str = "mean") -> list[dict]:
    """Score ``checkpoint`` on every extracted FF++ manipulation's test split; returns results records.

    Zero-shot: a (DFDC-trained) checkpoint, no FF++ training; each manipulation is scored against the
    original (real) test videos."""
    encoder, cfg = load_inference_model(checkpoint, device)
    cfg = _model_geometry(encoder, cfg)
    methods = _present_methods(root, None)
    metrics = _score(checkpoint, encoder, _test_split(root, cfg, methods, splits_dir, compression), device,
                     batch_size, num_workers)
    result = metrics.compute(strategy)
    videos = metrics.videos(strategy)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(out / "predictions_zero_shot.csv", videos)
    curves = _curves(videos, methods)
    if curves:
        roc_png(curves, out / "roc_zero_shot.png", f"Zero-shot (video level): {name}")
    return [{"model": name, "protocol": "zero-shot", "method": m, "metrics": result["per_method"][m]}
            for m in methods]


def cross_manipulation(config: Path, root: Path, out: Path, name: str, leave_out: list[str] | None,
                       checkpoint: Path | None = None, scratch: bool = False, splits_dir: Path | None = None,
                       opts: list[str] | None = None, device: torch.device = torch.device("cpu"),
                       strategy: str = "mean", on_fold: Callable[[dict], None] | None = None) -> list[dict]:
    """Fine-tune (or, with ``scratch``, train) per left-out method and score it; returns results records.

    Per left-out method M: fine-tune on FF++ originals + the other three manipulations (train split;
    checkpoint selection on the val split, never on test), then score the left-out M + originals of the
    test split. ``scratch`` trains the same model with no pre-training and classification only (the
    paper's Scratch row).

    With a ``checkpoint`` (and not ``scratch``) the model section comes from the checkpoint's own config
    and its encoder initialises fine-tuning; the data and schedule come from ``config``. ``on_fold`` is
    called with each fold's record as soon as it is scored (a caller can keep finished folds).
    """
    from ..engine import fit

    if checkpoint is None and not scratch:
        raise ConfigError("--checkpoint: cross-manipulation fine-tunes a trained model; give one, or --scratch")
    methods = _present_methods(root, None)
    folds = _present_methods(root, leave_out) if leave_out else methods
    base = load_config(config, [f"data.root={root}", *(opts or [])])
    if splits_dir is not None:
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, splits_dir=str(splits_dir)))
    records, curves = [], {}
    for method in folds:
        data = dataclasses.replace(base.data, name="ffpp", methods=[m for m in methods if m != method],
                                   exclude_methods=[])
        cfg = dataclasses.replace(base, data=data)
        if scratch:
            cfg = dataclasses.replace(cfg, decoder=None, ssat=dataclasses.replace(cfg.ssat, lam=1.0),
                                      train=dataclasses.replace(cfg.train, init_from=None))
        else:
            _, ckpt_cfg = load_inference_model(checkpoint)
            cfg = dataclasses.replace(cfg, model=ckpt_cfg.model,
                                      train=dataclasses.replace(cfg.train, init_from=str(checkpoint)))
        run = out / "cross" / method
        print(f"[eval_ff] cross-manipulation, left out {method}: training on original + {', '.join(data.methods)} "
              f"-> {run}", flush=True)
        fit(cfg, run)
        encoder, run_cfg = load_inference_model(run / "best.pt", device)
        run_cfg = _model_geometry(encoder, run_cfg)
        compression = cfg.data.compression
        metrics = _score(run / "best.pt", encoder, _test_split(root, run_cfg, [method], Path(cfg.data.splits_dir)
                                                               if cfg.data.splits_dir else None, compression),
                         device, cfg.data.batch_size, cfg.data.num_workers)
        videos = metrics.videos(strategy)
        write_predictions_csv(run / "predictions_test.csv", videos)
        curves.update(_curves(videos, [method]))
        records.append({"model": name, "protocol": "cross", "method": method,
                        "metrics": metrics.compute(strategy)["per_method"][method]})
        if on_fold is not None:
            on_fold(records[-1])
    if curves:
        roc_png(curves, out / "roc_cross.png", f"Cross-manipulation (video level): {name}")
    return records


def _score(checkpoint: Path, encoder: torch.nn.Module, dataset: FaceClipDataset, device: torch.device,
           batch_size: int, num_workers: int) -> StreamingMetrics:
    """:func:`score_dataset`, a NaN / inf output naming the checkpoint it came from."""
    try:
        return score_dataset(encoder, dataset, device, batch_size, num_workers)
    except NonFiniteScores as e:
        raise NonFiniteScores(f"{checkpoint}: {e}") from None


def _curves(videos: list[dict], methods: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """Video-level ROC inputs per manipulation: its fakes against the real videos scored by the same model."""
    reals = [v for v in videos if v["label"] == 0]
    curves = {}
    for m in methods:
        fakes = [v for v in videos if v["method"] == m and v["label"] == 1]
        if reals and fakes:
            curves[m] = ([v["label"] for v in reals + fakes], [v["prob"] for v in reals + fakes])
    return curves


def write_table(out: Path, records: list[dict]) -> dict[str, Path]:
    """``results.{md,csv,json}`` in ``out`` (merged with records already there from other runs)."""
    import json

    existing = out / "results.json"
    if existing.is_file():
        new = {(r["model"], r["protocol"], r["method"]) for r in records}
        try:
            saved = json.loads(existing.read_text())
        except ValueError as e:
            raise ValueError(f"{existing}: not readable JSON ({e}); move it away to start a new table") from None
        old = [r for r in saved.get("records", []) if (r["model"], r["protocol"], r["method"]) not in new]
        records = old + records
    return write_results(out, results_table(records))
