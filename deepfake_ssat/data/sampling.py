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
from torch.utils.data import Dataset, Sampler, get_worker_info


def derive_seed(*keys: int) -> int:
    """A 63-bit seed that depends on every key (non-negative ints), well mixed."""
    return int(np.random.SeedSequence(list(keys)).generate_state(1, dtype=np.uint64)[0] >> 1)


class EpochSampler(Sampler):
    """Shuffled order per epoch (seeded by ``seed`` and the epoch), starting ``start`` items in.

    ``weights`` (one per item): draw ``num_items`` items with replacement in proportion to them
    instead of a permutation (class balancing). Under DDP, rank ``rank`` of ``world_size`` takes
    every ``world_size``-th item of the epoch's global order (truncated to a multiple of the world
    size), so the union of the ranks' batches is the one-process batch of the same global size.
    """

    def __init__(self, num_items: int, seed: int, shuffle: bool = True, weights: list[float] | None = None,
                 rank: int = 0, world_size: int = 1):
        if weights is not None and len(weights) != num_items:
            raise ValueError(f"{len(weights)} weights for {num_items} items")
        self.num_items = num_items
        self.seed = seed
        self.shuffle = shuffle
        self.weights = torch.tensor(weights, dtype=torch.float64) if weights is not None else None
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Next iteration yields epoch ``epoch`` from this rank's ``start``-th item on."""
        self.epoch, self.start = epoch, start

    def per_rank(self) -> int:
        """Items each rank sees per epoch."""
        return self.num_items // self.world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        gen = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch))
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.num_items, replacement=True, generator=gen).tolist()
        elif self.shuffle:
            order = torch.randperm(self.num_items, generator=gen).tolist()
        else:
            order = list(range(self.num_items))
        mine = order[:self.per_rank() * self.world_size][self.rank::self.world_size]
        for position, index in enumerate(mine[self.start:], start=self.start):
            keys = (self.seed, self.epoch, index)
            if self.weights is not None:  # an item drawn twice gets two augmentations
                keys += (position * self.world_size + self.rank,)
            yield index, derive_seed(*keys)

    def __len__(self) -> int:
        return self.per_rank() - self.start


def class_balance_weights(labels: list[int]) -> list[float]:
    """Per-item weights giving every class the same total weight."""
    counts = np.bincount(np.asarray(labels))
    return [1.0 / counts[y] for y in labels]


class SeededItems(Dataset):
    """Wraps a dataset so ``ds[(index, seed)]`` runs its random transforms under ``seed``.

    Python, NumPy and torch CPU generators are seeded for the call. In the main process they are restored
    afterwards, so the caller's random streams (masking, dropout) are untouched. A loader worker's generators serve
    only its items, each of which seeds them first, so there they are not saved and restored: that took ~90 us per
    item (NumPy's state alone ~65 us), as much as a 32 x 32 image's whole transform. ``restore``: True / False
    to decide that here instead (False: items exactly as a loader worker reads them, e.g. to time a worker's work).
    """

    def __init__(self, dataset: Dataset, restore: bool | None = None):
        self.dataset = dataset
        self.restore = restore

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        restore = get_worker_info() is None if self.restore is None else self.restore
        if not restore:
            _seed_generators(seed)
            return self.dataset[index]
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            _seed_generators(seed)
            try:
                return self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def _seed_generators(seed: int) -> None:
    """Seed Python's, NumPy's (legacy global) and torch's CPU generators from one seed."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)  # CPU only: torch.manual_seed also queues CUDA seeding
