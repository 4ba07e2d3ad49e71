"""What the trainer needs from a dataset split: the :class:`TrainingData` contract (as :class:`~deepfake_ssat.models.
encoder.Encoder` is what it needs from a model).

Every split :func:`deepfake_ssat.data.build_datasets` returns meets it, so the trainer records, balances and
announces any dataset the same way, without asking which kind it holds (``tests/test_architecture.py`` checks each).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch


@runtime_checkable
class TrainingData(Protocol):
    """A map-style dataset of items ``(input, label[, video key])`` that can say what it holds.

    ``labels``: every item's class, in item order (class-balanced sampling, ``data.loader.balanced``).
    ``extraction``: the parameters its face crops were extracted with, stored in checkpoints so that inference
    crops faces the same way; None for data that is not extracted face crops.
    """

    labels: Sequence[int] | torch.Tensor
    extraction: dict | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...

    def describe(self) -> str:
        """One line for the run's log: what the split holds (sizes, classes)."""
        ...

    def manifest(self) -> list[dict]:
        """What the split reads (video keys, labels and crop lists for face clips; sizes and a hash otherwise),
        written to ``data_manifest.json`` and hashed into the run: equal manifests, same data."""
        ...
