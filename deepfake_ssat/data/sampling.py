"""Deterministic, resumable sampling with per-item seeded augmentation.

The sampler yields ``(index, seed)`` pairs: the order depends only on (seed, epoch), and every
item's augmentation draw only on (seed, epoch, index). A run resumed mid-epoch, or run with a
different number of loader workers, therefore sees exactly the same batches.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (non-negative ints), well mixed."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler):
    """Shuffled order per epoch (seeded by ``seed`` and the epoch), starting ``start`` items in."""

    def __init__(self, num_items: int, seed: int, shuffle: bool = True):
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        for index in order[self.start:]:
            yield index, derive_seed(self.seed, self.epoch, index)

    def __len__(self) -> int:
        return self.num_items - self.start


class SeededItems(Dataset):
    """Wraps a dataset so ``ds[(index, seed)]`` runs its random transforms under ``seed``.

    Python, NumPy and torch CPU generators are seeded for the call and restored afterwards, so the
    caller's random streams (masking, dropout) are untouched when loading in the main process.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues CUDA seeding
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
