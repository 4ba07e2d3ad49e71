"""The paper's FF++ protocols (Table 8) on extracted FF++ face crops: zero-shot and cross-manipulation.

Clips [B, C, T, H, W] are streamed through the model and only (video, label, fake probability) is kept per
clip (:func:`score_dataset`); video-level metrics, tables, ROC curves and prediction CSVs are built from those.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader

from ..config import Config, ConfigError, DecoderConfig, config_from_dict, find_config, load_config
from ..data import FaceClipDataset, build_face_clips
from ..data.workers import init_worker
from ..runtime import amp_dtype, autocast
from ..engine.weights import load_inference_model
from ..faces.inputs import FFPP_METHODS, FFPP_PAPER_METHODS
from ..metrics import StreamingMetrics
from .report import roc_png, write_predictions_csv


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
                        pin_memory=device.type == "cuda", worker_init_fn=init_worker)
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


def ffpp_test_split(root: Path, cfg: Config, methods: list[str], splits_dir: Path | None,
                    compression: str) -> FaceClipDataset:
    """The official FF++ test split (originals + ``methods``) at ``compression``, clipped as ``cfg`` says."""
    return build_face_clips(
        "ffpp", root, cfg.model.img_size, cfg.model.num_frames, frame_step=cfg.data.faces.frame_step,
        augment=False, eval_clips=cfg.data.faces.eval_clips, compression=compression, methods=methods,
        splits_dir=splits_dir, only=("test",))["test"]


def with_encoder_geometry(encoder: torch.nn.Module, cfg: Config) -> Config:
    """``cfg`` with the encoder's actual img_size / num_frames filled in (configs may leave them unset)."""
    model = dataclasses.replace(cfg.model, img_size=encoder.img_size, num_frames=encoder.num_frames)
    return dataclasses.replace(cfg, model=model)


def present_methods(root: Path, wanted: list[str] | None) -> list[str]:
    """The extracted FF++ manipulations under ``root`` that ``wanted`` names (None: the paper's four present)."""
    present = sorted({p.parent.parent.parent.name for p in root.glob("ffpp/*/*/*/manifest.json")} & set(FFPP_METHODS))
    if not present:
        raise ConfigError(f"--data-root: {root} holds no extracted FF++ manipulations (ffpp/<Method>/<c>/<id>); "
                          f"run dfssat-extract-faces <FF++ root> --out {root}")
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
    cfg = with_encoder_geometry(encoder, cfg)
    methods = present_methods(root, None)
    test = ffpp_test_split(root, cfg, methods, splits_dir, compression)
    metrics = score_checkpoint(checkpoint, encoder, test, device, batch_size, num_workers)
    result = metrics.compute(strategy)
    videos = metrics.videos(strategy)
    out.mkdir(parents=True, exist_ok=True)
    write_predictions_csv(out / "predictions_zero_shot.csv", videos)
    curves = _curves(videos, methods)
    if curves:
        roc_png(curves, out / "roc_zero_shot.png", f"Zero-shot (video level): {name}")
    return [{"model": name, "protocol": "zero-shot", "method": m, "metrics": result["per_method"][m]}
            for m in methods]


# ------------------------------------------------------------------ Table 8 rows: each keeps its own recipe

ROWS = {  # packaged FF++ config ffpp_videomae_<row> -> the Table 8 row it fine-tunes
    "095": "VideoMAE (0.95) + SSAT",
    "075": "VideoMAE (0.75) + SSAT",
    "ssl_095_ft": "VideoMAE SSL (0.95)",
    "ssl_075_ft": "VideoMAE SSL (0.75)",
    "scratch": "Scratch",
}


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a fold trains with: λ, mask ratio, decoder, and the Table 8 row (``ROWS`` key) they make.

    ``mask_ratio`` is the tube-masking ratio of an SSAT row, the SSL pre-training ratio of an SSL -> FT row
    (None when it cannot be told) and None for Scratch; ``decoder`` is None for classification only."""
    row: str | None
    lam: float
    mask_ratio: float | None
    decoder: DecoderConfig | None
    told_by: str = ""

    @property
    def config_name(self) -> str:
        return f"ffpp_videomae_{self.row}"

    def describe(self) -> str:
        name = ROWS.get(self.row or "", "no packaged row")
        if self.lam < 1:
            d = self.decoder
            dec = f"decoder depth {d.depth} width {d.embed_dim}" if d is not None else "no decoder"
            return f"{name}: lam {self.lam:g}, mask ratio {self.mask_ratio:g}, {dec}"
        ssl = f", SSL mask ratio {self.mask_ratio:g}" if self.mask_ratio is not None else ""
        return f"{name}: classification only (lam 1, no decoder{ssl})"


def _ratio_tag(ratio: float | None) -> str | None:
    return {0.75: "075", 0.95: "095"}.get(round(ratio, 4)) if ratio is not None else None


def _ssl_ratio(init_from: str) -> float | None:
    """The mask ratio of the SSL pre-training an SSL -> FT checkpoint started from: the pre-training
    checkpoint's own config when it is still there (λ 0), else its run name (``..._ssl_075/last.pt``)."""
    from ..engine.checkpoint import load_checkpoint

    path = Path(init_from)
    if path.is_file() and path.suffix == ".pt":
        try:
            cfg = config_from_dict(load_checkpoint(path)["config"], source=str(path))
            if cfg.ssat.lam == 0:
                return cfg.ssat.mask_ratio
        except Exception:  # not ours (an official VideoMAE .pth) or unreadable: fall back to the name
            pass
    found = re.search(r"ssl_0?\.?(75|95)(?![0-9])", path.as_posix())
    return int(found.group(1)) / 100 if found else None


def checkpoint_recipe(ckpt_cfg: Config) -> Recipe:
    """The Table 8 row a checkpoint belongs to, from its own config.

    λ in (0, 1): SSAT, fine-tuned on FF++ with the checkpoint's λ / mask ratio / decoder. λ 0: an SSL
    pre-training checkpoint, fine-tuned for classification only. λ 1 with ``train.init_from``: SSL -> FT
    (the DFDC fine-tuning of a pre-trained encoder; the SSL ratio from :func:`_ssl_ratio`), classification
    only. λ 1 without: a classification-only model trained from scratch, classification only."""
    s, init = ckpt_cfg.ssat, ckpt_cfg.train.init_from
    if 0 < s.lam < 1:
        return Recipe(_ratio_tag(s.mask_ratio), s.lam, s.mask_ratio, ckpt_cfg.decoder,
                      f"SSAT checkpoint (ssat.lam {s.lam:g})")
    if s.lam == 0:
        tag = _ratio_tag(s.mask_ratio)
        return Recipe(f"ssl_{tag}_ft" if tag else None, 1.0, s.mask_ratio, None,
                      "SSL pre-training checkpoint (ssat.lam 0)")
    if not init:
        return Recipe("scratch", 1.0, None, None, "classification-only checkpoint, no train.init_from")
    ratio = _ssl_ratio(init)
    tag = _ratio_tag(ratio)
    return Recipe(f"ssl_{tag}_ft" if tag else None, 1.0, ratio, None,
                  f"classification-only fine-tuning of train.init_from {init}")


def config_recipe(cfg: Config, config: Path | None = None) -> Recipe:
    """What ``cfg`` trains (its row from the file name ``ffpp_videomae_<row>.yaml`` when it has one)."""
    found = re.fullmatch(r"ffpp_videomae_(.+)", Path(config).stem) if config is not None else None
    row = found.group(1) if found and found.group(1) in ROWS else None
    s = cfg.ssat
    if s.lam < 1:
        return Recipe(row, s.lam, s.mask_ratio, cfg.decoder)
    return Recipe(row, 1.0, None if row == "scratch" else s.mask_ratio, None)


def recipe_mismatch(want: Recipe, have: Recipe) -> list[str]:
    """How the config's recipe ``have`` differs from the checkpoint's ``want`` (empty: it matches)."""
    problems = []
    if want.row and have.row and want.row != have.row:
        problems.append(f"row {have.row} vs {want.row}")
    if have.lam != want.lam:
        problems.append(f"ssat.lam {have.lam:g} vs {want.lam:g}")
    if want.mask_ratio is not None and have.mask_ratio is not None and want.row != "scratch" \
            and round(have.mask_ratio, 4) != round(want.mask_ratio, 4):
        problems.append(f"ssat.mask_ratio {have.mask_ratio:g} vs {want.mask_ratio:g}")
    if want.lam < 1 and have.lam < 1 and have.decoder != want.decoder:
        problems.append(f"decoder {_decoder_text(have.decoder)} vs {_decoder_text(want.decoder)}")
    return problems


def _decoder_text(d: DecoderConfig | None) -> str:
    return "none" if d is None else f"depth {d.depth} width {d.embed_dim} heads {d.num_heads} mlp {d.mlp_ratio:g}"


def recipe_config(recipe: Recipe, model_name: str | None = None) -> Path:
    """The packaged FF++ config of ``recipe``'s row: ``video/ffpp_videomae_<row>.yaml``, or its
    ``video/tiny`` variant when that one's model is ``model_name`` (the checkpoint's encoder)."""
    if recipe.row is None:
        ssl = "ffpp_videomae_ssl_075_ft or ffpp_videomae_ssl_095_ft" if recipe.lam == 1 else \
            "a config with the same ssat.lam / ssat.mask_ratio / decoder"
        raise ConfigError(f"no packaged FF++ config for this checkpoint's recipe ({recipe.describe()}; "
                          f"{recipe.told_by}); give --config ({ssl})")
    name = f"ffpp_videomae_{recipe.row}"
    full = find_config(f"video/{name}")
    tiny = find_config(f"video/tiny/{name}")
    if model_name is not None and load_config(full).model.name != model_name \
            and load_config(tiny).model.name == model_name:
        return tiny
    return full


def cross_manipulation(config: Path | None, root: Path, out: Path, name: str, leave_out: list[str] | None,
                       checkpoint: Path | None = None, scratch: bool = False, splits_dir: Path | None = None,
                       opts: list[str] | None = None, device: torch.device = torch.device("cpu"),
                       strategy: str = "mean", on_fold: Callable[[dict], None] | None = None,
                       allow_recipe_mismatch: bool = False) -> list[dict]:
    """Fine-tune (or, with ``scratch``, train) per left-out method and score it; returns results records.

    Per left-out method M: fine-tune on FF++ originals + the other three manipulations (train split;
    checkpoint selection on the val split, never on test), then score the left-out M + originals of the
    test split. ``scratch`` trains the model with no pre-training (the paper's Scratch row).

    Each row keeps its own recipe (:func:`checkpoint_recipe`): an SSAT checkpoint is fine-tuned with its
    λ / mask ratio / decoder, an SSL -> FT or classification-only checkpoint (and ``scratch``) for
    classification only. ``config`` None picks the packaged ``ffpp_videomae_<row>`` config
    (:func:`recipe_config`); a ``config`` (after ``opts``) whose recipe differs is a one-line
    :class:`ConfigError` naming both, unless ``allow_recipe_mismatch`` (then the config's recipe is trained).

    With a ``checkpoint`` (and not ``scratch``) the model section comes from the checkpoint's own config
    and its encoder initialises fine-tuning; the data and schedule come from ``config``. Every fold's run
    folder (``out/cross/<row name>/<left-out method>``) keeps the config it trained with (``config.yaml``,
    written by :func:`fit`) and ``recipe.json`` (the row, the config file, and whether a mismatch was allowed).
    ``on_fold`` is called with each fold's record as soon as it is scored (a caller can keep finished folds).
    """
    from ..engine import fit
    from ..io import atomic_write_json

    if checkpoint is None and not scratch:
        raise ConfigError("--checkpoint: cross-manipulation fine-tunes a trained model; give one, or --scratch")
    ckpt_cfg = None if scratch else load_inference_model(checkpoint)[1]
    want = Recipe("scratch", 1.0, None, None, "--scratch") if scratch else checkpoint_recipe(ckpt_cfg)
    if config is None:
        config = recipe_config(want, ckpt_cfg.model.name if ckpt_cfg is not None else None)
    methods = present_methods(root, None)
    folds = present_methods(root, leave_out) if leave_out else methods
    base = load_config(config, [f"data.root={root}", *(opts or [])])
    have = config_recipe(base, config)
    problems = recipe_mismatch(want, have)
    source = "--scratch" if scratch else f"--checkpoint {checkpoint}"
    if problems and not allow_recipe_mismatch:
        fix = f"use --config {want.config_name}" if want.row else "give a config with the checkpoint's recipe"
        raise ConfigError(f"--config {config}: recipe does not match {source} ({'; '.join(problems)}: config "
                          f"vs checkpoint); {fix}, or add --allow-recipe-mismatch to fine-tune as configured")
    if problems:
        print(f"[eval_ff] --allow-recipe-mismatch: training {have.describe()} from {source} "
              f"({want.describe()}; {'; '.join(problems)})", flush=True)
    if splits_dir is not None:
        faces = dataclasses.replace(base.data.faces, splits_dir=str(splits_dir))
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, faces=faces))
    records, curves = [], {}
    for method in folds:
        cfg = _fold_config(base, method, methods, None if scratch else checkpoint, ckpt_cfg)
        run = out / "cross" / row_folder(name) / method  # rows sharing an --out keep their own fold runs
        print(f"[eval_ff] cross-manipulation, left out {method}: {have.describe()} ({Path(config).name}); "
              f"training on original + {', '.join(cfg.data.faces.methods)} -> {run}", flush=True)
        run.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run / "recipe.json", {
            "row": have.row, "recipe": have.describe(), "config": str(config), "opts": list(opts or []),
            "source": source, "source_recipe": want.describe(), "told_by": want.told_by,
            "mismatch": problems, "allow_recipe_mismatch": bool(problems)})
        fit(cfg, run)  # writes run/config.yaml: the resolved config of this fold
        videos, per_method = _score_fold(run, cfg, root, method, device, strategy)
        curves.update(_curves(videos, [method]))
        records.append({"model": name, "protocol": "cross", "method": method, "metrics": per_method})
        if on_fold is not None:
            on_fold(records[-1])
    if curves:
        roc_png(curves, out / "roc_cross.png", f"Cross-manipulation (video level): {name}")
    return records


def _fold_config(base: Config, method: str, methods: list[str], checkpoint: Path | None,
                 ckpt_cfg: Config | None) -> Config:
    """``base`` for the fold leaving ``method`` out: FF++ with the other methods, initialised from
    ``checkpoint`` (its model section) or, with None, trained from scratch."""
    faces = dataclasses.replace(base.data.faces, methods=[m for m in methods if m != method], exclude_methods=[])
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, name="ffpp", faces=faces))
    if checkpoint is None:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, init_from=None))
    return dataclasses.replace(cfg, model=ckpt_cfg.model,
                               train=dataclasses.replace(cfg.train, init_from=str(checkpoint)))


def _score_fold(run: Path, cfg: Config, root: Path, method: str, device: torch.device,
                strategy: str) -> tuple[list, dict]:
    """Score a fold's ``best.pt`` on the left-out ``method`` + originals of the test split; writes
    ``predictions_test.csv``; returns the video-level predictions and the method's metrics."""
    encoder, run_cfg = load_inference_model(run / "best.pt", device)
    run_cfg = with_encoder_geometry(encoder, run_cfg)
    faces = cfg.data.faces
    splits = Path(faces.splits_dir) if faces.splits_dir else None
    test = ffpp_test_split(root, run_cfg, [method], splits, faces.compression)
    metrics = score_checkpoint(run / "best.pt", encoder, test, device, cfg.data.loader.batch_size,
                               cfg.data.loader.num_workers)
    videos = metrics.videos(strategy)
    write_predictions_csv(run / "predictions_test.csv", videos)
    return videos, metrics.compute(strategy)["per_method"][method]


def row_folder(name: str) -> str:
    """A row name as one safe folder name (``VideoMAE (0.95) + SSAT`` -> ``VideoMAE_0.95_SSAT``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-") or "model"


def score_checkpoint(checkpoint: Path, encoder: torch.nn.Module, dataset: FaceClipDataset, device: torch.device,
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
