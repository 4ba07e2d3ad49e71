"""Datasets by name. Each builder returns {"train", "val"[, "test"]} datasets whose items start with
(input, label); face-clip items add the video key. ``data.images.eval_perturbed`` adds "test_perturbed"
(the test split under a fixed random perspective warp, paper Table 2). Every split meets the
:class:`~.contract.TrainingData` contract the trainer relies on."""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..config import ConfigError, DataConfig
from ..io import paused_gc
from .contract import TrainingData
from .digits import DIGITS_CLASSES, TensorImages, build_digits
from .faceclips import DatasetError, FaceClipDataset, manifest_sha256, scan_extraction
from .images import (IMAGE_FOLDERS, TORCHVISION, TORCHVISION_CLASSES, ImageSubset, MultiView, PerspectivePerturbed,
                     build_image_dataset, image_num_classes, stratified_sample, subset_count, two_views)
from .sampling import EpochSampler, SeededItems, derive_seed
from .splits import SPLITS, listed_videos, split_celebdf, split_dfdc, split_ffpp, split_list

FACE_CLIP_DATASETS = ("dfdc", "ffpp", "celebdf", "list")  # list: your own videos, dfssat-extract-faces --list
IMAGE_DATASETS = (*TORCHVISION, *IMAGE_FOLDERS)
NUM_CLASSES = {"digits": DIGITS_CLASSES, **{name: 2 for name in FACE_CLIP_DATASETS}, **TORCHVISION_CLASSES}


def num_classes(name: str, root: str | Path | None = None) -> int:
    """Class count of dataset ``name``; ImageFolder trees count the class folders of ``root/train``."""
    if name in IMAGE_FOLDERS:
        return image_num_classes(name, root)
    if name not in NUM_CLASSES:
        known = sorted({*NUM_CLASSES, *IMAGE_FOLDERS})
        raise ConfigError(f"data.name: unknown dataset {name!r}; known: {', '.join(known)}")
    return NUM_CLASSES[name]


def build_datasets(cfg: DataConfig, img_size: int, in_chans: int, num_frames: int | None = None,
                   views: int = 1, uint8: bool = False) -> dict[str, TrainingData]:
    """Datasets for ``cfg.name`` at the encoder's input size, channel count and (video) clip length.

    ``views = 2``: training items are ``([view1, view2], label)``, two independent augmentations
    of one image (the SimCLR / DINO auxiliary tasks; image datasets and digits only). ``uint8``: face clips
    stay uint8 ``[T, H, W, 3]``, to be normalised on the device (:func:`.transforms.normalize_clips`); images ignore it.
    """
    images, faces = cfg.images, cfg.faces
    if cfg.name in IMAGE_DATASETS:  # before the root check: data.images.download may create the root
        if num_frames is not None:
            raise ConfigError(f"model.name: {cfg.name} holds still images; use an image encoder, not a video one")
        datasets = build_image_dataset(
            cfg.name, cfg.root, img_size, in_chans,
            train_transform=images.train_transform if cfg.augment else None, val_fraction=cfg.val_fraction,
            split_seed=cfg.split_seed, subset_fraction=images.subset_fraction, subset_size=images.subset_size,
            download=images.download)
        return _finish(cfg, datasets, views)
    num_classes(cfg.name)
    if images.download:
        raise ConfigError(f"data.images.download: {cfg.name} cannot be downloaded; set data.images.download=false")
    if cfg.root is not None and not Path(cfg.root).exists():
        raise ConfigError(f"data.root: {cfg.root} does not exist; point data.root at the dataset")
    if cfg.name == "digits":
        if cfg.root is not None:
            raise ConfigError(f"data.root: {cfg.root}: digits ship inside scikit-learn and take no root; remove it")
        datasets = build_digits(img_size, in_chans, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, cfg.augment)
        datasets["train"] = _subset_tensor_images(datasets["train"], cfg)
        return _finish(cfg, datasets, views)
    for key in ("subset_fraction", "subset_size"):
        if getattr(images, key) is not None:
            raise ConfigError(f"data.images.{key}: subsets are for image datasets; {cfg.name} splits by video")
    if images.eval_perturbed:
        raise ConfigError(f"data.images.eval_perturbed: the perspective test is for image datasets, not {cfg.name}")
    if views != 1:
        raise ConfigError(f"ssat.aux: the multi-view auxiliary tasks (simclr, dino) train on images; {cfg.name} "
                          f"holds face clips: use ssat.aux=mae")
    if cfg.root is None:
        raise ConfigError(f"data.root: {cfg.name} needs the output folder of dfssat-extract-faces; set data.root")
    if num_frames is None or in_chans != 3:
        raise ConfigError(f"data.name: {cfg.name} holds RGB face clips; use a video model with in_chans 3")
    return build_face_clips(
        cfg.name, Path(cfg.root), img_size, num_frames, frame_step=faces.frame_step, augment=cfg.augment,
        eval_clips=faces.eval_clips, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction,
        split_seed=cfg.split_seed, val_parts=faces.val_parts, test_parts=faces.test_parts,
        compression=faces.compression, methods=faces.methods, exclude_methods=faces.exclude_methods,
        splits_dir=Path(faces.splits_dir) if faces.splits_dir else None,
        test_list=Path(faces.test_list) if faces.test_list else None,
        video_list=Path(faces.video_list) if faces.video_list else None, uint8=uint8)


@paused_gc()
def build_face_clips(name: str, root: Path, img_size: int, num_frames: int, *, frame_step: int = 1,
                     augment: bool = True, eval_clips: int = 4, val_fraction: float = 0.1,
                     test_fraction: float = 0.2, split_seed: int = 0, val_parts: list[str] | None = None,
                     test_parts: list[str] | None = None, compression: str = "c23",
                     methods: list[str] | None = None, exclude_methods: list[str] | None = None,
                     splits_dir: Path | None = None, test_list: Path | None = None,
                     video_list: Path | None = None, only: tuple[str, ...] = SPLITS,
                     uint8: bool = False) -> dict[str, FaceClipDataset]:
    """Train / val / test face-clip datasets of ``name`` (dfdc | ffpp | celebdf | list) from an extraction root:
    scanned (:mod:`.faceclips`), split by the dataset's protocol (:mod:`.splits`), ``only`` the splits
    named (e.g. ``("test",)`` for evaluation)."""
    if frame_step < 1 or eval_clips < 1:
        raise DatasetError(f"data.faces.frame_step and data.faces.eval_clips must be >= 1, got {frame_step}, "
                           f"{eval_clips}")
    videos, counts = scan_extraction(root, num_frames, frame_step, img_size)
    if name == "dfdc":
        splits = split_dfdc(videos, val_parts, test_parts, val_fraction, test_fraction, split_seed)
    elif name == "ffpp":
        if splits_dir is None:
            splits_dir = next((d for d in (root / "splits", root) if (d / "train.json").is_file()), root / "splits")
        splits = split_ffpp(videos, Path(splits_dir), compression, methods, exclude_methods or [])
    elif name == "celebdf":
        if test_list is None:
            raise DatasetError("data.faces.test_list: Celeb-DF needs the official List_of_testing_videos.txt; set "
                               "data.faces.test_list")
        splits = split_celebdf(videos, Path(test_list), val_fraction, split_seed)
    elif name == "list":
        if video_list is not None:
            videos = listed_videos(videos, root, video_list)
        splits = split_list(videos, val_fraction, test_fraction, split_seed)
    else:
        raise DatasetError(f"data.name: {name!r} is not a face-clip dataset ({', '.join(FACE_CLIP_DATASETS)})")
    splits = {split: items for split, items in splits.items() if split in only}
    for split, items in splits.items():
        if not items:
            raise DatasetError(f"data: {name} split '{split}' is empty ({len(videos)} usable videos under {root}); "
                               f"check data.root and the split settings")
    left_out = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()) if status != "padded")
    if left_out:
        print(f"[data] {root}: videos left out: {left_out} (each manifest.json says why)", flush=True)
    if counts["padded"]:
        print(f"[data] {root}: {counts['padded']} videos have fewer face crops than one clip needs; their "
              f"last crop is repeated", flush=True)
    return {split: FaceClipDataset(items, img_size, num_frames, frame_step, train=split == "train",
                                   augment=augment, eval_clips=eval_clips, uint8=uint8)
            for split, items in splits.items()}


def _subset_tensor_images(train: TensorImages, cfg: DataConfig) -> TensorImages:
    """The fixed-seed class-stratified training subset of ``data.images.subset_fraction`` / ``subset_size``."""
    count = subset_count(len(train), cfg.images.subset_fraction, cfg.images.subset_size)
    if count is None:
        return train
    keep = torch.tensor(stratified_sample(train.labels.tolist(), count, derive_seed(cfg.split_seed, 1)))
    return TensorImages(train.images[keep], train.labels[keep], train.transform)


def _finish(cfg: DataConfig, datasets: dict[str, TrainingData], views: int) -> dict[str, TrainingData]:
    """Multi-view training items and the perturbed test split, as the config asks."""
    if views == 2:
        train = datasets["train"]
        if isinstance(train, ImageSubset):
            datasets["train"] = two_views(train)
        else:
            train = copy.copy(train)
            transform = train.transform or (lambda image: image)
            train.transform = MultiView([transform, transform])
            datasets["train"] = train
    elif views != 1:
        raise ConfigError(f"ssat.aux: 1 or 2 views per training image, got {views}")
    images = cfg.images
    if images.eval_perturbed:
        if "test" not in datasets:
            raise ConfigError(f"data.images.eval_perturbed: {cfg.name} at {cfg.root} has no test split to perturb "
                              f"(add root/test/<class>/<image>)")
        datasets["test_perturbed"] = PerspectivePerturbed(datasets["test"], images.perturb_distortion,
                                                          images.perturb_seed)
    return datasets


__all__ = ["DatasetError", "EpochSampler", "FaceClipDataset", "IMAGE_DATASETS", "SeededItems", "TrainingData",
           "build_datasets", "build_face_clips", "manifest_sha256", "num_classes"]
