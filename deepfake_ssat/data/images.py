"""Image classification datasets of the paper: CIFAR-10/100, Flowers102, SVHN (torchvision) and
ImageFolder trees (Chaoyang, PMNIST, DomainNet clipart / infograph / sketch, ImageNet-1K). CIFAR-10 is also read
from JPEG tarballs (:mod:`.cifar_jpeg`) when ``data.root`` holds them and no ``cifar-10-batches-py``.

``flowers102_trainval`` is Flowers-102 as the paper trains on it: torchvision's train and val
splits (1020 + 1020 images) joined into one training set, from which the selection split is held
out like CIFAR's; ``flowers102`` keeps torchvision's own train / val / test.

Every split is an :class:`ImageSubset`: items ``(image [C, H, W], label)`` and ``.labels`` for class-balanced
sampling; :func:`build_image_dataset` makes the splits.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, Mixup, create_transform
from timm.data.auto_augment import RandAugment
from torch.utils.data import ConcatDataset, Dataset
from torchvision.datasets import CIFAR10, CIFAR100, SVHN, Flowers102, ImageFolder, VisionDataset
from torchvision.datasets.folder import find_classes
from torchvision.transforms import Compose, InterpolationMode
from torchvision.transforms import functional as TF

from ..config import ConfigError
from .cifar_jpeg import JPEG_LAYOUT, JpegCifar10, has_jpeg_tarballs, open_cifar10_jpeg
from .sampling import derive_seed

if TYPE_CHECKING:
    from .digits import TensorImages

DEIT_AUTO_AUGMENT = "rand-m9-mstd0.5-inc1"
TRAIN_TRANSFORMS = ("deit", "simple")


@dataclass(frozen=True)
class TorchvisionSource:
    """A torchvision dataset: what it reads under ``root`` and how to open one of its splits."""
    title: str
    folder: str  # read by torchvision under root ("" = root itself)
    files: tuple[str, ...]  # inside folder
    num_classes: int
    splits: tuple[str, ...]  # its own splits
    open: Callable[[Path, str, bool], VisionDataset]  # (root, split, download) -> dataset of PIL images
    # its splits read as one training split (validation then held out of it by data.val_fraction)
    merge: tuple[str, ...] = ()


TORCHVISION = {
    "cifar10": TorchvisionSource(
        "CIFAR-10", "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta"), 10, ("train", "test"),
        lambda root, split, download: CIFAR10(root, train=split == "train", download=download)),
    "cifar100": TorchvisionSource(
        "CIFAR-100", "cifar-100-python", ("train", "test", "meta"), 100, ("train", "test"),
        lambda root, split, download: CIFAR100(root, train=split == "train", download=download)),
    "flowers102": TorchvisionSource(
        "Flowers-102", "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"), 102, ("train", "val", "test"),
        lambda root, split, download: Flowers102(root, split=split, download=download)),
    "flowers102_trainval": TorchvisionSource(  # the paper's ~2K training images: train + val
        "Flowers-102", "flowers-102", ("jpg", "imagelabels.mat", "setid.mat"), 102, ("train", "val", "test"),
        lambda root, split, download: Flowers102(root, split=split, download=download), merge=("train", "val")),
    "svhn": TorchvisionSource(
        "SVHN", "", ("train_32x32.mat", "test_32x32.mat"), 10, ("train", "test"),
        lambda root, split, download: SVHN(root, split=split, download=download)),
}
IMAGE_FOLDERS = ("chaoyang", "pmnist", "domainnet_clipart", "domainnet_infograph", "domainnet_sketch", "imagenet",
                 "imagefolder")
TORCHVISION_CLASSES = {name: source.num_classes for name, source in TORCHVISION.items()}
FOLDER_LAYOUT = "root/train/<class>/<image>, root/val/<class>/<image> (and optionally root/test/<class>/<image>)"


class ImageSubset(Dataset):
    """Items ``(transform(image), label)`` for the ``indices`` of ``base`` (PIL images).

    Images are converted to ``mode`` ("RGB" or "L") before ``transform``. ``labels`` are those of
    the selected items; ``classes`` the class names of ``base``.
    """

    extraction = None  # not face crops (the TrainingData contract)

    def __init__(
            self,
            name: str,
            base: VisionDataset,
            indices: list[int],
            base_labels: list[int],
            classes: list[str],
            transform: Callable,
            mode: str,
    ):
        self.name = name
        self.base = base
        self.indices = indices
        self.labels = [base_labels[i] for i in indices]
        self.classes = classes
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        image, _ = self.base[self.indices[index]]
        return self.transform(image.convert(self.mode)), self.labels[index]

    def with_transform(self, transform: Callable) -> ImageSubset:
        """The same items under another transform."""
        other = copy.copy(self)
        other.transform = transform
        return other

    def describe(self) -> str:
        source = f" ({self.base.describe()})" if isinstance(self.base, JpegCifar10) else ""
        return f"{self.name}: {len(self)} images, {len(self.classes)} classes{source}"

    def manifest(self) -> list[dict]:
        """What the split reads: its size and a hash of its item indices and labels."""
        digest = hashlib.sha256(json.dumps([self.indices, self.labels]).encode()).hexdigest()
        return [{"items": len(self), "sha256": digest}]


class MultiView:
    """Transform giving one view per transform of ``transforms``: image -> list of tensors."""

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)

    def __call__(self, image) -> list[torch.Tensor]:
        return [t(image) for t in self.transforms]


def two_views(dataset: ImageSubset, transform: Callable | None = None) -> ImageSubset:
    """``dataset`` with items ``([view1, view2], label)``: two independent draws of ``transform``
    (default: the dataset's own). Batches collate to ``([views1 [B, C, H, W], views2 [B, C, H, W]], labels [B])``."""
    transform = transform or dataset.transform
    return dataset.with_transform(MultiView([transform, transform]))


def perspective_points(
        width: int,
        height: int,
        distortion: float,
        generator: torch.Generator,
) -> tuple[list[list[int]], list[list[int]]]:
    """torchvision's ``RandomPerspective.get_params`` drawn from ``generator``: (start, end) corners."""
    dw, dh = int(distortion * (width // 2)), int(distortion * (height // 2))

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=generator))

    top_left = [draw(0, dw + 1), draw(0, dh + 1)]
    top_right = [draw(width - dw - 1, width), draw(0, dh + 1)]
    bottom_right = [draw(width - dw - 1, width), draw(height - dh - 1, height)]
    bottom_left = [draw(0, dw + 1), draw(height - dh - 1, height)]
    start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
    return start, [top_left, top_right, bottom_right, bottom_left]


class PerspectivePerturbed(Dataset):
    """The items of an evaluation split under a random perspective warp (the paper's CIFAR-100-p /
    IN-1K-p: ``RandomPerspective(distortion_scale=0.5, p=1)`` after resize and crop, before
    normalisation; the uncovered border is black).

    Each item's warp is drawn from a generator seeded by ``(seed, index)``, so the perturbed set is
    the same whatever the loader order, batch size or worker count. An :class:`ImageSubset` is
    warped as a PIL image between its geometric and tensor steps; other datasets (in-memory
    normalised tensors such as digits) are warped as tensors, filling with each image's minimum
    (its background).
    """

    extraction = None  # not face crops (the TrainingData contract)

    def __init__(self, base: ImageSubset | TensorImages, distortion: float = 0.5, seed: int = 0):
        if not 0.0 <= distortion <= 1.0:
            raise ConfigError(f"data.images.perturb_distortion: must be in [0, 1], got {distortion}")
        self.base, self.distortion, self.seed = base, distortion, seed
        self.labels = base.labels
        self.pre = self.post = None
        if isinstance(base, ImageSubset):
            steps = list(getattr(base.transform, "transforms", [base.transform]))
            cut = next((i for i, t in enumerate(steps) if "ToTensor" in type(t).__name__), len(steps))
            self.pre, self.post = Compose(steps[:cut]), Compose(steps[cut:])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        gen = torch.Generator().manual_seed(derive_seed(self.seed, index))
        if self.pre is not None:
            base = self.base
            image, _ = base.base[base.indices[index]]
            image = self.pre(image.convert(base.mode))
            start, end = perspective_points(*image.size, self.distortion, gen)
            image = TF.perspective(image, start, end, interpolation=InterpolationMode.BILINEAR, fill=0)
            return self.post(image), base.labels[index]
        x, *rest = self.base[index]
        start, end = perspective_points(x.shape[-1], x.shape[-2], self.distortion, gen)
        x = TF.perspective(x, start, end, interpolation=InterpolationMode.BILINEAR, fill=[float(x.min())] * x.shape[0])
        return (x, *rest)

    def describe(self) -> str:
        return f"{self.base.describe()}, random perspective {self.distortion:g} (seed {self.seed})"

    def manifest(self) -> list[dict]:
        # in-memory images (digits) are listed by size only, as before they had a manifest: the run hashes of
        # earlier digits runs stay valid
        base = self.base.manifest() if isinstance(self.base, ImageSubset) else [{"items": len(self)}]
        return [{**row, "perspective": self.distortion, "perspective_seed": self.seed} for row in base]


def mixup_fn(
        num_classes: int,
        mixup: float = 0.8,
        cutmix: float = 1.0,
        label_smoothing: float = 0.1,
) -> Mixup:
    """timm's batch Mixup / CutMix (DeiT: 0.8 / 1.0): ``(x, y [B]) -> (x, soft targets [B, num_classes])``."""
    return Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=label_smoothing, num_classes=num_classes)


# ---------------------------------------------------------------------------------------------
# Transforms


def _mean_std(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """ImageNet statistics; their channel average for grey images."""
    if in_chans == 3:
        return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return (sum(IMAGENET_DEFAULT_MEAN) / 3,), (sum(IMAGENET_DEFAULT_STD) / 3,)


def _at_least_one_bit(level_fn: Callable, magnitude: float, hparams: dict) -> tuple[int]:
    """timm's PosterizeIncreasing keeps 0 bits at magnitude 10, which Pillow 13 rejects; keep 1."""
    return (max(1, level_fn(magnitude, hparams)[0]),)


def make_train_transform(kind: str, img_size: int, in_chans: int) -> Callable:
    """``"deit"``: RandomResizedCrop + flip + RandAugment m9 + random erasing 0.25 (bicubic);
    ``"simple"``: RandomResizedCrop + flip. PIL image -> normalised tensor [C, img_size, img_size]."""
    mean, std = _mean_std(in_chans)
    if kind == "simple":
        return create_transform(img_size, is_training=True, color_jitter=None, interpolation="bicubic",
                                mean=mean, std=std)
    if kind != "deit":
        raise ConfigError(f"data.images.train_transform: must be one of {', '.join(TRAIN_TRANSFORMS)} or null, "
                          f"got {kind!r}")
    transform = create_transform(img_size, is_training=True, auto_augment=DEIT_AUTO_AUGMENT, re_prob=0.25,
                                 interpolation="bicubic", mean=mean, std=std)
    for step in transform.transforms:
        if isinstance(step, RandAugment):
            for op in step.ops:
                if op.name == "PosterizeIncreasing":
                    op.level_fn = partial(_at_least_one_bit, op.level_fn)
    return transform


def make_eval_transform(img_size: int, in_chans: int) -> Callable:
    """Resize + centre crop (DeiT crop ratio 0.875 above 32 px; a plain resize at 32 px and below)."""
    mean, std = _mean_std(in_chans)
    return create_transform(img_size, is_training=False, interpolation="bicubic",
                            crop_pct=0.875 if img_size > 32 else 1.0, mean=mean, std=std)


# ---------------------------------------------------------------------------------------------
# Splits


def stratified_sample(labels: Sequence[int], count: int, seed: int) -> list[int]:
    """``count`` positions of ``labels`` (sorted), each class in proportion to its size.

    Class ``c`` of ``n_c`` items gets ``floor(count * n_c / n)``, plus one for the classes with the
    largest remainders (ties to the smaller class), taken from the front of a permutation seeded by
    ``(seed, c)``: the same seed gives the same positions.
    """
    n = len(labels)
    if not 0 <= count <= n:
        raise ValueError(f"cannot draw {count} of {n} items")
    by_class: dict[int, list[int]] = {}
    for position, label in enumerate(labels):
        by_class.setdefault(label, []).append(position)
    classes = sorted(by_class)
    quota = {c: count * len(by_class[c]) // n for c in classes}
    spare = count - sum(quota.values())
    for c in sorted(classes, key=lambda c: (-(count * len(by_class[c]) % n), c))[:spare]:
        quota[c] += 1
    taken = []
    for c in classes:
        order = torch.randperm(len(by_class[c]), generator=torch.Generator().manual_seed(derive_seed(seed, c)))
        taken += [by_class[c][i] for i in order[:quota[c]].tolist()]
    return sorted(taken)


def subset_count(n: int, subset_fraction: float | None, subset_size: int | None) -> int | None:
    if subset_fraction is not None and subset_size is not None:
        raise ConfigError("data.images.subset_size: set data.images.subset_fraction or data.images.subset_size, "
                          "not both")
    if subset_fraction is not None:
        if not 0.0 < subset_fraction <= 1.0:
            raise ConfigError(f"data.images.subset_fraction: must be in (0, 1], got {subset_fraction}")
        return max(1, round(subset_fraction * n))
    if subset_size is not None and not 1 <= subset_size <= n:
        raise ConfigError(f"data.images.subset_size: must be in [1, {n}] (the training split's size), "
                          f"got {subset_size}")
    return subset_size


# ---------------------------------------------------------------------------------------------
# Sources


class JoinedSplits(ConcatDataset):
    """Splits of one dataset read as one, in order (Flowers-102 train + val): items ``(PIL image, label)``."""

    def __init__(self, parts: Sequence[VisionDataset]):
        super().__init__(parts)
        self.labels = [label for part in parts for label in _base_labels(part)]
        self.classes = _base_classes(parts[0])


def _base_labels(base: VisionDataset | JoinedSplits) -> list[int]:
    if isinstance(base, JoinedSplits):
        return list(base.labels)
    if isinstance(base, SVHN):
        return base.labels.tolist()
    if isinstance(base, Flowers102):
        return list(base._labels)
    return list(base.targets)


def _base_classes(base: VisionDataset | JoinedSplits) -> list[str]:
    return [str(c) for c in range(10)] if isinstance(base, SVHN) else list(base.classes)


def _open_torchvision(name: str, root: Path, download: bool) -> dict[str, VisionDataset]:
    """The dataset's own splits; one ConfigError line for anything missing, corrupt or unreadable."""
    source = TORCHVISION[name]
    folder = root / source.folder
    if not download:
        for path in (folder, *(folder / f for f in source.files)):
            if not path.exists():
                raise ConfigError(f"data.root: {path} not found; download {source.title} into {root} or set "
                                  f"data.images.download=true")
    splits = {}
    for split in source.splits:
        try:
            splits[split] = source.open(root, split, download)
        except ImportError as e:
            raise ConfigError(f"data.name: {name} reads .mat files with {e.name}; pip install {e.name}") from None
        except (RuntimeError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            if download:
                raise ConfigError(f"data.images.download: fetching {source.title} into {root} failed "
                                  f"({reason})") from None
            if isinstance(e, OSError):
                raise ConfigError(f"data.root: cannot read {source.title} under {folder} ({reason})") from None
            raise ConfigError(f"data.root: {folder} fails torchvision's {source.title} checksum (corrupt or partial "
                              f"download); delete it and set data.images.download=true") from None
    return splits


def _open_cifar10(root: Path, download: bool) -> dict[str, VisionDataset]:
    """CIFAR-10 by what ``root`` holds: torchvision's ``cifar-10-batches-py`` first, else the JPEG tarballs, else
    torchvision's download when asked; one ConfigError line naming both layouts when there is neither."""
    batches = root / TORCHVISION["cifar10"].folder
    if batches.exists() or (download and not has_jpeg_tarballs(root)):
        return _open_torchvision("cifar10", root, download)
    if has_jpeg_tarballs(root):
        return open_cifar10_jpeg(root)
    raise ConfigError(f"data.root: {batches} not found, nor the JPEG tarballs {JPEG_LAYOUT}; download CIFAR-10 "
                      f"into {root}, set data.images.download=true or point data.root at the tarballs' folder")


def _open_folders(name: str, root: Path, download: bool) -> dict[str, VisionDataset]:
    """``root/train``, ``root/val`` and, if present, ``root/test`` as ImageFolders with the same classes."""
    if download:
        raise ConfigError(f"data.images.download: {name} is an ImageFolder tree torchvision cannot download; set "
                          f"data.images.download=false and lay it out as {FOLDER_LAYOUT}")
    splits = {}
    for split in ("train", "val", "test"):
        folder = root / split
        if not folder.is_dir():
            if split == "test":
                continue
            raise ConfigError(f"data.root: {folder} not found; {name} reads {FOLDER_LAYOUT}")
        try:
            splits[split] = ImageFolder(folder)
        except FileNotFoundError as e:
            raise ConfigError(f"data.root: {folder}: {str(e).splitlines()[0]}") from None
        if splits[split].classes != splits["train"].classes:
            differ = sorted(set(splits[split].classes) ^ set(splits["train"].classes))
            raise ConfigError(f"data.root: {folder} and {root / 'train'} must hold the same class folders; "
                              f"{', '.join(differ[:5])} in only one")
    return splits


def image_num_classes(name: str, root: str | Path | None) -> int:
    """Class count: fixed for the torchvision datasets, the class folders of ``root/train`` otherwise."""
    if name in TORCHVISION_CLASSES:
        return TORCHVISION_CLASSES[name]
    if root is None:
        raise ConfigError(f"data.root: {name} needs the ImageFolder tree ({FOLDER_LAYOUT}); set data.root")
    train = Path(root) / "train"
    if not train.is_dir():
        raise ConfigError(f"data.root: {train} not found; {name} reads {FOLDER_LAYOUT}")
    try:
        return len(find_classes(train)[0])
    except FileNotFoundError as e:
        raise ConfigError(f"data.root: {train}: {str(e).splitlines()[0]}") from None


def build_image_dataset(
        name: str,
        root: str | Path | None,
        img_size: int,
        in_chans: int,
        *,
        train_transform: str | None = "deit",
        val_fraction: float = 0.1,
        split_seed: int = 0,
        subset_fraction: float | None = None,
        subset_size: int | None = None,
        download: bool = False,
) -> dict[str, ImageSubset]:
    """``{"train", "val", "test"}`` splits of ``name`` at ``root``; ImageFolder trees without
    ``root/test`` give ``{"train", "val"}``.

    Items ``(image [in_chans, img_size, img_size], label)``. ``train_transform``: ``"deit"``,
    ``"simple"`` or ``None`` (the evaluation transform). ``val_fraction`` (datasets without their
    own validation split) and the ``subset_fraction`` / ``subset_size`` of the remaining training
    split are class-stratified draws fixed by ``split_seed``.

    Validation is the dataset's own split where it has one (flowers102, ImageFolder ``root/val``), else
    a fixed-seed class-stratified part of the training split (``flowers102_trainval``: of torchvision's
    train + val, the paper's training set; test stays test); the optional stratified training subset
    serves the ImageNet-subset study. Nothing is downloaded unless ``download=True``; a missing file
    raises one :class:`ConfigError` line naming it.
    """
    if name not in TORCHVISION and name not in IMAGE_FOLDERS:
        known = ", ".join(sorted((*TORCHVISION, *IMAGE_FOLDERS)))
        raise ConfigError(f"data.name: unknown image dataset {name!r}; known: {known}")
    if root is None:
        raise ConfigError(f"data.root: {name} needs a folder to read{' or download' if name in TORCHVISION else ''} "
                          f"it; set data.root")
    if in_chans not in (1, 3):
        raise ConfigError(f"model.in_chans: image datasets give 1 (grey) or 3 (RGB) channels, got {in_chans}")
    root = Path(root)
    if name == "cifar10":
        splits = _open_cifar10(root, download)
    elif name in TORCHVISION:
        splits = _open_torchvision(name, root, download)
    else:
        splits = _open_folders(name, root, download)
    merge = TORCHVISION[name].merge if name in TORCHVISION else ()
    if merge:
        splits = {"train": JoinedSplits([splits[k] for k in merge]),
                  **{k: v for k, v in splits.items() if k not in merge}}
    eval_tf = make_eval_transform(img_size, in_chans)
    train_tf = eval_tf if train_transform is None else make_train_transform(train_transform, img_size, in_chans)
    classes = _base_classes(splits["train"])
    mode = "RGB" if in_chans == 3 else "L"

    def subset(split: str, base: VisionDataset, indices: list[int], labels: list[int], transform) -> ImageSubset:
        return ImageSubset(f"{name} {split}", base, indices, labels, classes, transform, mode)

    train_labels = _base_labels(splits["train"])
    train_idx = list(range(len(train_labels)))
    out = {}
    if "val" in splits:
        val_labels = _base_labels(splits["val"])
        out["val"] = subset("val", splits["val"], list(range(len(val_labels))), val_labels, eval_tf)
    else:
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction: {name} takes validation from its training split; must be in "
                              f"(0, 1), got {val_fraction}")
        val_idx = stratified_sample(train_labels, max(1, round(val_fraction * len(train_labels))),
                                    derive_seed(split_seed, 0))
        taken = set(val_idx)
        train_idx = [i for i in train_idx if i not in taken]
        out["val"] = subset("val", splits["train"], val_idx, train_labels, eval_tf)
    count = subset_count(len(train_idx), subset_fraction, subset_size)
    if count is not None:
        picks = stratified_sample([train_labels[i] for i in train_idx], count, derive_seed(split_seed, 1))
        train_idx = [train_idx[p] for p in picks]
    out["train"] = subset("train", splits["train"], train_idx, train_labels, train_tf)
    if "test" in splits:
        test_labels = _base_labels(splits["test"])
        out["test"] = subset("test", splits["test"], list(range(len(test_labels))), test_labels, eval_tf)
    return {k: out[k] for k in ("train", "val", "test") if k in out}
