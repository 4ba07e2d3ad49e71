"""Cross-dataset evaluation (video level) of one checkpoint on the test sets the field reports: FF++ (official test
split, per manipulation and together), Celeb-DF v2 (its official test list), the DFDC public test set and your own
labelled videos, read from extraction roots of ``dfssat-extract-faces``. Clips are streamed through the model
(:func:`.ffpp.score_dataset`); each test set gets per-video predictions and a ROC curve, and its records merge
into one cross-dataset table (``results.{md,csv,json}``, :func:`.report.update_table`) across runs and checkpoints.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import pickle
from pathlib import Path
from typing import Any

import torch

from ..config import Config, ConfigError, DataConfig
from ..data import FaceClipDataset, build_face_clips
from ..data.faceclips import FaceVideo, scan_extraction
from ..data.splits import split_celebdf
from ..engine.checkpoint import DIGEST_KEY
from ..engine.weights import is_detector_file, load_inference_model
from ..io import is_inside
from ..metrics import binary_metrics
from .ffpp import ffpp_test_split, present_methods, row_folder, score_checkpoint, with_encoder_geometry
from .report import CROSSDATA_DATASETS, roc_png, write_predictions_csv

DATASETS = CROSSDATA_DATASETS  # --dataset choices, in the table's column order
CELEBDF_LIST = "List_of_testing_videos.txt"
_EXTRACTED = {  # --dataset -> (its dataset name in an extraction root, how to extract it, readable name)
    "ffpp": ("ffpp", "dfssat-extract-faces <FF++ root>", "FF++"),
    "celebdf": ("celebdf", "dfssat-extract-faces <Celeb-DF root>", "Celeb-DF"),
    "dfdc-test": ("dfdc_test", "dfssat-extract-faces <DFDC test folder with labels.csv>", "DFDC test"),
    "list": ("list", "dfssat-extract-faces --list <your videos.csv>", "video list"),
}


@dataclasses.dataclass(frozen=True)
class EvalModel:
    """A loaded checkpoint: its encoder (clips -> logits), its config with the encoder's geometry filled in, the
    file it came from, the row name it gets in the table and the weights' stored sha256 (None if it has none)."""
    checkpoint: Path
    name: str
    encoder: torch.nn.Module
    cfg: Config
    sha256: str | None


@dataclasses.dataclass(frozen=True)
class EvalSets:
    """What one ``--dataset`` scores: its clips (each video scored once) and the test sets cut from them.

    ``sets``: test set name -> the manipulation it keeps besides every real video (None: every video).
    ``stem`` names the files (``predictions_<stem>.csv``, ``roc_<stem>.png``); ``info`` is recorded with
    each result (compression, protocol)."""
    dataset: str
    root: Path
    clips: FaceClipDataset
    sets: dict[str, str | None]
    stem: str
    info: dict[str, Any]


def pair_roots(datasets: list[str], roots: list[Path]) -> list[tuple[str, Path]]:
    """``(dataset, extraction root)`` pairs: one root serves every dataset, or one root per dataset in order."""
    if len(roots) == 1:
        return [(d, roots[0]) for d in datasets]
    if len(roots) == len(datasets):
        return list(zip(datasets, roots))
    raise ConfigError(f"--data-root: given {len(roots)} times for {len(datasets)} --dataset; give it once (one "
                      f"extraction root holding every dataset) or once per --dataset, in the same order")


def celebdf_test_list(root: Path, given: Path | None) -> Path:
    """Celeb-DF's official test list: ``given``, else ``<root>/List_of_testing_videos.txt``; ConfigError if absent."""
    path = given if given is not None else root / CELEBDF_LIST
    if not path.is_file():
        where = f"--test-list {path}: no such file" if given is not None else f"no {path}"
        raise ConfigError(f"{where}; Celeb-DF is tested on its official list: give --test-list "
                          f"<Celeb-DF root>/{CELEBDF_LIST}")
    return path


def load_eval_model(checkpoint: Path, name: str, device: torch.device) -> EvalModel:
    """A training checkpoint (``best.pt``) or exported detector (``.safetensors`` / ``.json``), loaded weights-only
    with its digest checked (:func:`~deepfake_ssat.engine.weights.load_inference_model`), ready to score."""
    encoder, cfg = load_inference_model(checkpoint, device)
    return EvalModel(checkpoint, name, encoder, with_encoder_geometry(encoder, cfg), _stored_digest(checkpoint))


def _stored_digest(checkpoint: Path) -> str | None:
    """The sha256 of the weights the file stores (a checkpoint's ``model_sha256``, a detector JSON's ``sha256``);
    the load has already checked the weights against it. The checkpoint is memory-mapped: no second copy."""
    if is_detector_file(checkpoint):
        return json.loads(checkpoint.with_suffix(".json").read_text()).get("sha256")
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, ValueError):  # readable by the loader but not mappable
        return None
    return ckpt.get(DIGEST_KEY) if isinstance(ckpt, dict) else None


def eval_sets(model: EvalModel, dataset: str, root: Path, *, compression: str = "c23",
              splits_dir: Path | None = None, test_list: Path | None = None, split: str = "all") -> EvalSets:
    """The test sets of ``dataset`` (:data:`DATASETS`) in the extraction root ``root`` (fake = 1 everywhere).

    ``ffpp``: the official test split at ``compression`` (:func:`.ffpp.ffpp_test_split`, as the zero-shot protocol),
    one set per manipulation (its fakes and the real test videos) and ``(all)``. ``celebdf``: the videos of the
    official ``test_list`` (default ``<root>/List_of_testing_videos.txt``; 1 = real in that file). ``dfdc-test``:
    every extracted DFDC test video (labels from its ``labels.csv``). ``list``: every extracted video of the
    list (``split`` all), or its ``split`` as training draws it (fractions, seed and video list of the
    checkpoint's config when it trained on the list, else the defaults). ConfigError (one line) when nothing is
    extracted."""
    cfg = model.cfg
    if dataset == "ffpp":
        return _ffpp_sets(cfg, root, compression, splits_dir)
    if dataset == "list" and split != "all":
        return _list_split(cfg, root, split)
    videos = _extracted(cfg, root, dataset)
    if dataset == "celebdf":
        path = celebdf_test_list(root, test_list)
        listed = sum(1 for line in path.read_text().splitlines() if line.strip())
        videos = split_celebdf(videos, path, 0.0, 0)["test"]
        if not videos:
            raise ConfigError(f"--data-root: none of the {listed} videos of {path} is extracted under {root}; "
                              f"run {_EXTRACTED[dataset][1]} --out {root}")
        if len(videos) < listed:
            print(f"[evaluate] Celeb-DF: {listed - len(videos)} of the {listed} videos of {path} are not extracted "
                  f"(or had no face) under {root}; scoring the {len(videos)} others", flush=True)
        return EvalSets(dataset, root, _clips(cfg, videos), {"Celeb-DF": None}, "celebdf",
                        {"protocol": f"official test list {path.resolve()}"})
    if dataset == "dfdc-test":
        return EvalSets(dataset, root, _clips(cfg, videos), {"DFDC test": None}, "dfdc_test",
                        {"protocol": "DFDC public test set (labels.csv)"})
    if dataset == "list":
        return EvalSets(dataset, root, _clips(cfg, videos), {"List": None}, "list",
                        {"protocol": "every extracted video of the list"})
    raise ConfigError(f"--dataset: {dataset!r} is not one of {', '.join(DATASETS)}")


def _ffpp_sets(cfg: Config, root: Path, compression: str, splits_dir: Path | None) -> EvalSets:
    methods = present_methods(root, None)
    if splits_dir is None:  # as build_face_clips finds it
        splits_dir = next((d for d in (root / "splits", root) if (d / "train.json").is_file()), root / "splits")
    clips = ffpp_test_split(root, cfg, methods, splits_dir, compression)
    prefix = "FF++" if compression == "c23" else f"FF++ {compression}"
    sets: dict[str, str | None] = {f"{prefix} {m}": m for m in methods}
    sets[f"{prefix} (all)"] = None
    protocol = f"official test split {(splits_dir / 'test.json').resolve()}"
    return EvalSets("ffpp", root, clips, sets, f"ffpp_{compression}",
                    {"compression": compression, "protocol": protocol})


def _list_split(cfg: Config, root: Path, split: str) -> EvalSets:
    """The list's ``split`` as training draws it (group-safe), with the checkpoint's own split settings (and its
    ``data.faces.video_list``) when it trained on the list."""
    _check_extracted(root, "list")
    trained = cfg.data.name == "list"
    drawn = {k: getattr(cfg.data if trained else DataConfig, k) for k in ("val_fraction", "test_fraction",
                                                                          "split_seed")}
    faces = cfg.data.faces
    video_list = Path(faces.video_list) if trained and faces.video_list else None
    clips = build_face_clips("list", root, cfg.model.img_size, cfg.model.num_frames, frame_step=faces.frame_step,
                             augment=False, eval_clips=faces.eval_clips, **drawn, video_list=video_list,
                             only=(split,))[split]
    settings = ", ".join(f"{k} {v}" for k, v in drawn.items()) + (f", video_list {video_list}" if video_list else "")
    return EvalSets("list", root, clips, {f"List ({split})": None}, f"list_{split}",
                    {"protocol": f"{split} split of the list as training draws it ({settings})"})


def _check_extracted(root: Path, dataset: str) -> None:
    name, extract, readable = _EXTRACTED[dataset]
    if not (root / name).is_dir():
        raise ConfigError(f"--data-root: {root} holds no extracted {readable} videos ({name}/...); run "
                          f"{extract} --out {root}")


def _extracted(cfg: Config, root: Path, dataset: str) -> list[FaceVideo]:
    """Every usable extracted video of ``dataset`` under ``root``."""
    _check_extracted(root, dataset)
    name, extract, readable = _EXTRACTED[dataset]
    videos, _ = scan_extraction(root, cfg.model.num_frames, cfg.data.faces.frame_step, cfg.model.img_size)
    found = [v for v in videos if v.dataset == name]
    if not found:
        raise ConfigError(f"--data-root: {root}/{name} holds no usable {readable} video (each manifest.json says "
                          f"why); run {extract} --out {root}")
    return found


def _clips(cfg: Config, videos: list[FaceVideo]) -> FaceClipDataset:
    return FaceClipDataset(videos, cfg.model.img_size, cfg.model.num_frames, cfg.data.faces.frame_step, train=False,
                           augment=False, eval_clips=cfg.data.faces.eval_clips)


def evaluate(model: EvalModel, sets: EvalSets, out: Path, device: torch.device, batch_size: int = 16,
             num_workers: int = 0, strategy: str = "mean") -> list[dict]:
    """Score ``sets`` with ``model`` and return one results record per test set (video level).

    Writes ``<out>/<model folder>/predictions_<stem>.csv`` (every scored video) and ``roc_<stem>.png`` (one curve
    per test set with both classes; none when no set has both). A NaN / inf model output raises
    :class:`.ffpp.NonFiniteScores` naming the checkpoint, before anything is written."""
    print(f"[evaluate] {model.name} on {', '.join(sets.sets)}: {sets.clips.describe()}", flush=True)
    metrics = score_checkpoint(model.checkpoint, model.encoder, sets.clips, device, batch_size, num_workers)
    videos = metrics.videos(strategy)
    folder = out / row_folder(model.name)
    predictions, roc = folder / f"predictions_{sets.stem}.csv", folder / f"roc_{sets.stem}.png"
    write_predictions_csv(predictions, videos)
    chosen = {name: [v for v in videos if method is None or v["label"] == 0 or v["method"] == method]
              for name, method in sets.sets.items()}
    chosen = {name: sel for name, sel in chosen.items() if sel}
    curves = {name: ([v["label"] for v in sel], [v["prob"] for v in sel])
              for name, sel in chosen.items() if len({v["label"] for v in sel}) == 2}
    if curves:
        roc_png(curves, roc, f"{model.name} (video level, {strategy})")
    elif is_inside(roc, out):  # (a model folder linked elsewhere is left alone)
        roc.unlink(missing_ok=True)  # an earlier run's curve would contradict this run's predictions
    common = {"dataset": sets.dataset, "level": "video", "strategy": strategy, "compression": None, **sets.info,
              "checkpoint": str(model.checkpoint.resolve()), "model_sha256": model.sha256,
              "data_root": str(sets.root.resolve()), "predictions": predictions.relative_to(out).as_posix(),
              "roc": roc.relative_to(out).as_posix() if curves else None,
              "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    return [{"model": model.name, "test_set": name, **common,
             "metrics": binary_metrics([v["label"] for v in sel], [v["prob"] for v in sel])}
            for name, sel in chosen.items()]
