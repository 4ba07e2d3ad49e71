"""scikit-learn's bundled handwritten digits (1,797 real 8x8 images), upscaled for ViTs."""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset
from torchvision.transforms import v2

DIGITS_CLASSES = 10


class TensorImages(Dataset):
    """Images [N, C, H, W] (already normalised) + labels [N], with an optional random transform."""

    extraction = None  # not face crops (the TrainingData contract)

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform=None):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self) -> str:
        return f"{len(self)} images, {len(torch.unique(self.labels))} classes"

    def manifest(self) -> list[dict]:
        """What the split holds: its size and a hash of its pixels and labels (in-memory data has no files)."""
        digest = hashlib.sha256(self.images.numpy().tobytes() + self.labels.numpy().tobytes()).hexdigest()
        return [{"items": len(self), "sha256": digest}]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])


def build_digits(
        img_size: int = 32,
        in_chans: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        augment: bool = True,
) -> dict[str, Dataset]:
    """Stratified train/val/test splits of the digits, upscaled to ``img_size`` (bilinear).

    Normalised with the training split's mean/std; ``augment`` adds a small random affine warp
    (digits must not be flipped).
    """
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # [N, 1, 8, 8]
    images = F.interpolate(images, size=(img_size, img_size), mode="bilinear", align_corners=False)
    images = images.expand(-1, in_chans, -1, -1).contiguous()  # [N, C, S, S]
    labels = torch.tensor(digits.target)
    index = torch.arange(len(labels)).numpy()
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels, random_state=split_seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), stratify=labels[rest], random_state=split_seed)
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    warp = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)) if augment else None
    return {
        "train": TensorImages(images[train], labels[train], warp),
        "val": TensorImages(images[val], labels[val]),
        "test": TensorImages(images[test], labels[test]),
    }
