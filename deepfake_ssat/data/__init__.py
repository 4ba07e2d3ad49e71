"""Datasets by name. Each builder returns {"train", "val"[, "test"]} datasets whose items start with
(input, label); face-clip items add the video key."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..config import ConfigError, DataConfig
from .digits import NUM_CLASSES as DIGITS_CLASSES
from .digits import build_digits
from .faceclips import DatasetError, FaceClipDataset, build_face_clips, manifest_sha256
from .sampling import EpochSampler, SeededItems

FACE_CLIP_DATASETS = ("dfdc", "ffpp", "celebdf")
NUM_CLASSES = {"digits": DIGITS_CLASSES, **{name: 2 for name in FACE_CLIP_DATASETS}}


def num_classes(name: str) -> int:
    if name not in NUM_CLASSES:
        raise ConfigError(f"data.name: unknown dataset {name!r}; known: {', '.join(sorted(NUM_CLASSES))}")
    return NUM_CLASSES[name]


def build_datasets(cfg: DataConfig, img_size: int, in_chans: int, num_frames: int | None = None) -> dict[str, Dataset]:
    """Datasets for ``cfg.name`` at the encoder's input size, channel count and (video) clip length."""
    num_classes(cfg.name)
    if cfg.root is not None and not Path(cfg.root).exists():
        raise ConfigError(f"data.root: {cfg.root} does not exist; point data.root at the dataset")
    if cfg.name == "digits":
        if cfg.root is not None:
            raise ConfigError(f"data.root: {cfg.root}: digits ship inside scikit-learn and take no root; remove it")
        return build_digits(img_size, in_chans, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.augment)
    if cfg.root is None:
        raise ConfigError(f"data.root: {cfg.name} needs the output folder of tools/extract_faces.py; set data.root")
    if num_frames is None or in_chans != 3:
        raise ConfigError(f"data.name: {cfg.name} holds RGB face clips; use a video model with in_chans 3")
    return build_face_clips(
        cfg.name, Path(cfg.root), img_size, num_frames, frame_step=cfg.frame_step, augment=cfg.augment,
        eval_clips=cfg.eval_clips, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, val_parts=cfg.val_parts, test_parts=cfg.test_parts,
        compression=cfg.compression, methods=cfg.methods, exclude_methods=cfg.exclude_methods,
        splits_dir=Path(cfg.splits_dir) if cfg.splits_dir else None,
        test_list=Path(cfg.test_list) if cfg.test_list else None)


__all__ = ["DatasetError", "EpochSampler", "FaceClipDataset", "SeededItems", "build_datasets", "manifest_sha256",
           "num_classes"]
