import os
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.flowers102
import torchvision.datasets.svhn
from PIL import Image
from scipy.io import savemat
from timm.data import Mixup
from timm.data.auto_augment import RandAugment
from torch.utils.data import DataLoader

from deepfake_ssat.config import ConfigError
from deepfake_ssat.data.images import (TORCHVISION_CLASSES, build_image_dataset, image_num_classes, make_train_transform,
                                       mixup_fn, stratified_sample, two_views)

CIFAR_TRAIN_LABELS = [i % 10 for i in range(60)]  # 6 per class over 5 batches of 12


def _exists_only(fpath, md5=None) -> bool:
    return os.path.isfile(fpath)


@pytest.fixture
def no_checksums(monkeypatch):
    """Our fake files cannot match torchvision's md5s: check presence only."""
    for module in (torchvision.datasets.cifar, torchvision.datasets.svhn, torchvision.datasets.flowers102):
        monkeypatch.setattr(module, "check_integrity", _exists_only)


def _pickle(path: Path, obj: dict) -> None:
    path.write_bytes(pickle.dumps(obj))


@pytest.fixture
def cifar_root(tmp_path: Path) -> Path:
    """cifar-10-batches-py as torchvision reads it: rows of 3072 uint8 (R, G, B planes of 32x32)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for b in range(5):
        labels = CIFAR_TRAIN_LABELS[12 * b:12 * (b + 1)]
        _pickle(folder / f"data_batch_{b + 1}",
                {"data": rng.integers(0, 256, (12, 3072), dtype=np.uint8), "labels": labels})
    test_pixels = rng.integers(0, 256, (10, 3072), dtype=np.uint8)
    _pickle(folder / "test_batch", {"data": test_pixels, "labels": list(range(10))})
    _pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    return tmp_path


def _png(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """root/{train,val,test}/<class>/*.png, 3 classes of 8 / 4 / 2 training images of odd sizes."""
    counts = {"train": {"ant": 8, "bee": 4, "cat": 2}, "val": {"ant": 2, "bee": 1, "cat": 1},
              "test": {"ant": 1, "bee": 1, "cat": 1}}
    seed = 0
    for split, per_class in counts.items():
        for cls, n in per_class.items():
            for i in range(n):
                seed += 1
                _png(tmp_path / split / cls / f"{i}.png", (20 + i, 24), seed)
    return tmp_path


def test_cifar10_splits_shapes_and_labels(cifar_root, no_checksums):
    ds = build_image_dataset("cifar10", cifar_root, 32, 3, train_transform="deit", val_fraction=0.2, split_seed=0)
    assert set(ds) == {"train", "val", "test"}
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (48, 12, 10)
    assert ds["train"].classes == [f"c{i}" for i in range(10)]
    assert TORCHVISION_CLASSES["cifar10"] == 10 == image_num_classes("cifar10", None)
    for split in ds.values():
        image, label = split[0]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert isinstance(label, int) and label == split.labels[0]
    train, val = ds["train"], ds["val"]
    assert set(train.indices).isdisjoint(val.indices) and set(train.indices) | set(val.indices) == set(range(60))
    assert train.labels == [CIFAR_TRAIN_LABELS[i] for i in train.indices]
    assert sorted(Counter(val.labels).values()) == [1] * 8 + [2] * 2  # 12 of 10 equal classes
    assert ds["test"].labels == list(range(10))
    assert "10 classes" in train.describe()


def test_cifar10_split_and_subset_are_reproducible_and_stratified(cifar_root, no_checksums):
    def build(seed, **kwargs):
        return build_image_dataset("cifar10", cifar_root, 32, 3, train_transform=None, val_fraction=0.2,
                                   split_seed=seed, **kwargs)

    a, b, c = build(0, subset_size=20), build(0, subset_size=20), build(1, subset_size=20)
    assert a["train"].indices == b["train"].indices and a["val"].indices == b["val"].indices
    assert a["train"].manifest() == b["train"].manifest()
    assert a["train"].indices != c["train"].indices
    assert len(a["train"]) == 20 and set(Counter(a["train"].labels).values()) == {2}
    assert set(a["train"].indices).isdisjoint(a["val"].indices)
    half = build(0, subset_fraction=0.5)["train"]
    assert len(half) == 24 and set(half.indices) <= set(build(0)["train"].indices)
    with pytest.raises(ConfigError, match="not both"):
        build(0, subset_size=5, subset_fraction=0.5)
    with pytest.raises(ConfigError, match=r"data.images.subset_size: must be in \[1, 48\]"):
        build(0, subset_size=49)


def test_stratified_sample_is_proportional_exact_and_seeded():
    labels = [0] * 50 + [1] * 30 + [2] * 15 + [3] * 5
    picks = stratified_sample(labels, 20, seed=7)
    assert picks == sorted(set(picks)) and len(picks) == 20
    assert Counter(labels[i] for i in picks) == {0: 10, 1: 6, 2: 3, 3: 1}
    assert stratified_sample(labels, 20, seed=7) == picks != stratified_sample(labels, 20, seed=8)
    odd = Counter(labels[i] for i in stratified_sample(labels, 7, seed=0))
    assert sum(odd.values()) == 7 and all(abs(odd[c] - 7 * n / 100) < 1 for c, n in Counter(labels).items())


def test_missing_cifar_root_or_file_is_one_line(tmp_path, cifar_root):
    with pytest.raises(ConfigError) as err:
        build_image_dataset("cifar10", tmp_path / "nowhere", 32, 3)
    message = str(err.value)
    assert message == (f"data.root: {tmp_path / 'nowhere' / 'cifar-10-batches-py'} not found, nor the JPEG tarballs "
                       f"root/train.tar.gz + root/test.tar.gz (members train/<class>/<image>, test/<class>/<image>); "
                       f"download CIFAR-10 into {tmp_path / 'nowhere'}, set data.images.download=true or point "
                       f"data.root at the tarballs' folder")
    (cifar_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ConfigError, match=r"data_batch_3 not found") as err:
        build_image_dataset("cifar10", cifar_root, 32, 3)
    assert "\n" not in str(err.value) and err.value.__context__ is None


def test_corrupt_cifar_files_fail_the_checksum_in_one_line(cifar_root):
    with pytest.raises(ConfigError,
                       match=r"fails torchvision's CIFAR-10 checksum .* set data.images.download=true$") as err:
        build_image_dataset("cifar10", cifar_root, 32, 3)
    assert "\n" not in str(err.value)


def test_unknown_name_no_root_and_bad_channels_are_config_errors(cifar_root):
    with pytest.raises(ConfigError, match="unknown image dataset 'cifar11'"):
        build_image_dataset("cifar11", cifar_root, 32, 3)
    with pytest.raises(ConfigError, match="data.root: cifar10 needs a folder"):
        build_image_dataset("cifar10", None, 32, 3)
    with pytest.raises(ConfigError, match="model.in_chans"):
        build_image_dataset("cifar10", cifar_root, 32, 2)
    with pytest.raises(ConfigError, match="data.images.train_transform"):
        make_train_transform("fancy", 32, 3)


def test_svhn_and_flowers_missing_files(tmp_path):
    with pytest.raises(ConfigError,
                       match=r"train_32x32.mat not found; download SVHN into .* data.images.download=true$"):
        build_image_dataset("svhn", tmp_path, 32, 3)
    (tmp_path / "flowers-102" / "jpg").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"flowers-102/imagelabels.mat not found; download Flowers-102"):
        build_image_dataset("flowers102", tmp_path, 32, 3)


def test_svhn_reads_mat_files_and_maps_ten_to_zero(tmp_path, no_checksums):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("test", 10)):
        labels = np.arange(1, n + 1).reshape(n, 1) % 10 + 1  # 1..10, 10 = digit 0
        savemat(tmp_path / f"{split}_32x32.mat",
                {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": labels.astype(np.uint8)})
    ds = build_image_dataset("svhn", tmp_path, 32, 3, val_fraction=0.25)
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (30, 10, 10)
    assert sorted(ds["test"].labels) == list(range(10))
    assert ds["train"][0][0].shape == (3, 32, 32)


def _flowers(root: Path) -> None:
    """flowers-102 as torchvision reads it: 12 images of 3 classes; train ids 1-6, val 7-9, test 10-12."""
    base = root / "flowers-102"
    for i in range(1, 13):
        _png(base / "jpg" / f"image_{i:05d}.jpg", (30, 40), i)
    savemat(base / "imagelabels.mat", {"labels": np.array([1, 2, 3] * 4)})  # 1-based
    savemat(base / "setid.mat", {"trnid": np.arange(1, 7), "valid": np.arange(7, 10), "tstid": np.arange(10, 13)})


def test_flowers102_uses_its_own_validation_split(tmp_path, no_checksums):
    _flowers(tmp_path)
    ds = build_image_dataset("flowers102", tmp_path, 32, 3, val_fraction=0.5)
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (6, 3, 3)
    assert ds["train"].labels == [0, 1, 2, 0, 1, 2]
    assert ds["val"][0][0].shape == (3, 32, 32)


def test_flowers102_trainval_trains_on_train_plus_val_and_holds_out_selection(tmp_path, no_checksums):
    """The paper's Flowers-102 training set is torchvision's train + val; selection is held out of it."""
    _flowers(tmp_path)
    ds = build_image_dataset("flowers102_trainval", tmp_path, 32, 3, val_fraction=1 / 3, split_seed=0)
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (6, 3, 3)
    assert TORCHVISION_CLASSES["flowers102_trainval"] == 102 == image_num_classes("flowers102_trainval", None)
    assert ds["train"].base is ds["val"].base and len(ds["train"].base) == 9  # the joined 6 + 3
    assert sorted(ds["train"].indices + ds["val"].indices) == list(range(9))  # disjoint, cover train + val
    assert ds["train"].base[8][1] == 2  # joined position 8 = torchvision val image 9 (class 3, 0-based 2)
    assert sorted(ds["val"].labels) == [0, 1, 2]  # class-stratified
    assert ds["test"].labels == [0, 1, 2] and ds["test"].base is not ds["train"].base
    image, label = ds["train"][len(ds["train"]) - 1]
    assert image.shape == (3, 32, 32) and label == ds["train"].labels[-1]
    again = build_image_dataset("flowers102_trainval", tmp_path, 32, 3, val_fraction=1 / 3, split_seed=0)
    assert again["val"].manifest() == ds["val"].manifest()  # fixed by split_seed
    with pytest.raises(ConfigError, match="data.val_fraction: flowers102_trainval takes validation"):
        build_image_dataset("flowers102_trainval", tmp_path, 32, 3, val_fraction=0.0)


@pytest.mark.parametrize("in_chans", [3, 1])
def test_image_folder_splits_grey_and_classes(folder_root, in_chans):
    ds = build_image_dataset("chaoyang", folder_root, 32, in_chans, train_transform="simple")
    assert (len(ds["train"]), len(ds["val"]), len(ds["test"])) == (14, 4, 3)
    assert ds["train"].classes == ["ant", "bee", "cat"] and image_num_classes("chaoyang", folder_root) == 3
    assert Counter(ds["train"].labels) == {0: 8, 1: 4, 2: 2}
    for split in ds.values():
        image, label = split[len(split) - 1]
        assert image.shape == (in_chans, 32, 32) and label == 2
    sub = build_image_dataset("imagenet", folder_root, 32, 3, subset_fraction=0.5, split_seed=3)["train"]
    assert Counter(sub.labels) == {0: 4, 1: 2, 2: 1}


def test_image_folder_without_test_and_layout_errors(folder_root):
    shutil.rmtree(folder_root / "test")
    assert set(build_image_dataset("domainnet_sketch", folder_root, 32, 3)) == {"train", "val"}
    with pytest.raises(ConfigError, match="data.images.download: domainnet_sketch is an ImageFolder tree"):
        build_image_dataset("domainnet_sketch", folder_root, 32, 3, download=True)
    shutil.rmtree(folder_root / "val" / "cat")
    with pytest.raises(ConfigError, match="must hold the same class folders; cat in only one"):
        build_image_dataset("pmnist", folder_root, 32, 3)
    (folder_root / "train" / "dog").mkdir()
    with pytest.raises(ConfigError, match=r"data.root: .*/train: Found no valid file for the classes dog"):
        build_image_dataset("pmnist", folder_root, 32, 3)
    (folder_root / "train" / "dog").rmdir()
    (folder_root / "val").rename(folder_root / "valid")
    with pytest.raises(ConfigError, match=r"data.root: .*/val not found; pmnist reads root/train/<class>/<image>"):
        build_image_dataset("pmnist", folder_root, 32, 3)
    with pytest.raises(ConfigError, match="train not found"):
        image_num_classes("pmnist", folder_root / "nowhere")


def test_two_views_collate_to_a_list_of_batches(folder_root):
    train = build_image_dataset("imagefolder", folder_root, 32, 3, train_transform="deit")["train"]
    paired = two_views(train)
    (v1, v2), label = paired[0]
    assert v1.shape == v2.shape == (3, 32, 32) and not torch.equal(v1, v2) and label == train.labels[0]
    views, labels = next(iter(DataLoader(paired, batch_size=4)))
    assert len(views) == 2 and views[0].shape == (4, 3, 32, 32) and labels.shape == (4,)
    assert paired.labels == train.labels and train[0][0].shape == (3, 32, 32)


def test_deit_transform_posterize_keeps_a_bit_and_mixup_helper():
    transform = make_train_transform("deit", 32, 3)
    ops = [op for step in transform.transforms if isinstance(step, RandAugment) for op in step.ops]
    posterize = next(op for op in ops if op.name == "PosterizeIncreasing")
    assert posterize.level_fn(10.0, posterize.hparams) == (1,) and posterize.level_fn(0.0, posterize.hparams) == (4,)
    mix = mixup_fn(10)
    assert isinstance(mix, Mixup)
    x, y = mix(torch.randn(4, 3, 32, 32), torch.arange(4))
    assert y.shape == (4, 10) and torch.allclose(y.sum(dim=1), torch.ones(4))
