"""Datasets by name. Each builder returns {"train", "val"[, "test"]} datasets of (input, label)."""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset

from ..config import ConfigError, DataConfig
from .digits import NUM_CLASSES as DIGITS_CLASSES
from .digits import build_digits
from .sampling import EpochSampler, SeededItems

NUM_CLASSES = {"digits": DIGITS_CLASSES}


def num_classes(name: str) -> int:
    if name not in NUM_CLASSES:
        raise ConfigError(f"data.name: unknown dataset {name!r}; known: {', '.join(sorted(NUM_CLASSES))}")
    return NUM_CLASSES[name]


def build_datasets(cfg: DataConfig, img_size: int, in_chans: int) -> dict[str, Dataset]:
    """Datasets for ``cfg.name`` at the encoder's input size and channel count."""
    num_classes(cfg.name)
    if cfg.root is not None and not Path(cfg.root).exists():
        raise ConfigError(f"data.root: {cfg.root} does not exist; point data.root at the dataset")
    if cfg.name == "digits":
        if cfg.root is not None:
            raise ConfigError(f"data.root: {cfg.root}: digits ship inside scikit-learn and take no root; remove it")
        return build_digits(img_size, in_chans, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.augment)
    raise AssertionError(cfg.name)


__all__ = ["EpochSampler", "SeededItems", "build_datasets", "num_classes"]
