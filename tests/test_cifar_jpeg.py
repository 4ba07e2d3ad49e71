"""CIFAR-10 from JPEG tarballs (data.name=cifar10, data.root=<folder of train.tar.gz + test.tar.gz>): read through
the config, cached and checked, each bad input one ConfigError line; and the real copy when it is here."""
import gzip
import io
import os
import pickle
import tarfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets.cifar
from PIL import Image
from skimage.data import astronaut

from deepfake_ssat.config import ConfigError
from deepfake_ssat.data import build_datasets
from deepfake_ssat.data import cifar_jpeg
from deepfake_ssat.data.cifar_jpeg import CIFAR10_CLASSES, JpegCifar10, load_split
from deepfake_ssat.data.images import build_image_dataset

REAL = Path(__file__).resolve().parents[1] / "../shared/data/cifar10_jpeg"
REAL_SHA256 = {"train": "fe323be6cf40ba16fffeee9072f5f1e3f991fba84846f267e3559069a49e20aa",
               "test": "4b250120166adc690b12f1ad5ed1aa61b1a4f178e510a0c2e2647b4f2b4a4c49"}
PER_CLASS = {"train": 3, "test": 2}
ASTRONAUT = astronaut()  # 512 x 512 RGB


def _jpeg(cls: int, i: int, size: tuple[int, int] = (32, 32), mode: str = "RGB") -> bytes:
    """A q75 JPEG of a 64 px crop of the astronaut, resized: each (class, i) a different crop."""
    y, x = 40 * cls, 60 * i + 7 * cls
    image = Image.fromarray(ASTRONAUT[y:y + 64, x:x + 64]).resize(size, Image.BICUBIC).convert(mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=75)
    return out.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, link, 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info


def _members(split: str, classes=CIFAR10_CLASSES) -> list[tuple[str, bytes | None]]:
    """(name, JPEG bytes; None for a folder) in reverse order: the reader sorts them."""
    members = [(split, None)]
    for c, cls in enumerate(classes):
        members.append((f"{split}/{cls}", None))
        members += [(f"{split}/{cls}/{i:04d}.jpg", _jpeg(c, i)) for i in range(PER_CLASS[split])]
    return members[::-1]


def _write_tar(path: Path, members: list, extra: list[tarfile.TarInfo] = ()) -> Path:
    """A tar.gz of ``members`` ((name, bytes | None)) and raw ``extra`` headers (links, devices)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            if data is None:
                tar.addfile(_info(name, tarfile.DIRTYPE))
            else:
                tar.addfile(_info(name, size=len(data)), io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DFSSAT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "cifar10_jpeg"


@pytest.fixture
def jpeg_root(tmp_path: Path, cache: Path) -> Path:
    root = tmp_path / "cifar10_jpeg"
    root.mkdir()
    for split in PER_CLASS:
        _write_tar(root / f"{split}.tar.gz", _members(split))
    return root


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_tarballs_read_through_the_config(jpeg_root, tiny_cfg):
    cfg = tiny_cfg("data.name=cifar10", f"data.root={jpeg_root}", "model.in_chans=3", "data.val_fraction=0.2",
                   "data.images.subset_fraction=0.5", "data.images.eval_perturbed=true")
    ds = build_datasets(cfg.data, 32, 3)
    assert {k: len(v) for k, v in ds.items()} == {"train": 12, "val": 6, "test": 20, "test_perturbed": 20}
    assert ds["test_perturbed"][0][0].shape == (3, 32, 32)
    test = ds["test"]
    assert isinstance(test.base, JpegCifar10) and test.classes == list(CIFAR10_CLASSES)
    assert test.labels == [c for c in range(10) for _ in range(2)]  # sorted folder index, CIFAR's order
    for position, (c, i) in enumerate((c, i) for c in range(10) for i in range(2)):
        image, label = test.base[position]
        assert label == c and image.mode == "RGB" and image.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(image), _decoded(_jpeg(c, i)))
    x, y = test[0]
    assert x.shape == (3, 32, 32) and y == 0
    assert sorted(Counter(ds["val"].labels).values()) == [1] * 6  # stratified: 6 of 10 equal classes
    assert set(ds["train"].indices).isdisjoint(ds["val"].indices)
    assert test.describe() == (f"cifar10 test: 20 images, 10 classes (test.tar.gz {test.base.sha256[:12]}: 20 JPEGs, "
                               f"2 per class, decoded)")
    nothing_extracted = sorted(p.name for p in jpeg_root.iterdir())
    assert nothing_extracted == ["test.tar.gz", "train.tar.gz"]


def test_the_cache_is_written_once_and_reused_without_opening_the_tarball(jpeg_root, cache, monkeypatch):
    first = build_image_dataset("cifar10", jpeg_root, 32, 3)["test"].base
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == ["test.json", "test.npy", "train.json",
                                                                         "train.npy"]  # no temp file left
    assert (cache / first.sha256 / "test.npy").is_file()  # keyed by the tarball's sha256
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.*")}

    def no_tar(*args, **kwargs):
        raise AssertionError("the tarball was opened as an archive")

    monkeypatch.setattr(cifar_jpeg.tarfile, "open", no_tar)
    again = build_image_dataset("cifar10", jpeg_root, 32, 3)["test"].base
    assert again.cached and not first.cached and "from the cache" in again.describe()
    np.testing.assert_array_equal(again.data, first.data)
    assert again.targets == first.targets
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.*")} == stamps
    monkeypatch.undo()
    _write_tar(jpeg_root / "test.tar.gz", _members("test")[1:])  # another tarball: another key, decoded again
    changed = load_split(jpeg_root / "test.tar.gz", "test")
    assert not changed.cached and changed.sha256 != first.sha256 and len(changed) == 19


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    lambda c: _flip_last_byte(c / "test.npy"),  # one pixel changed: the recorded sha256 no longer matches
    lambda c: (c / "test.npy").write_bytes((c / "test.npy").read_bytes()[:1000]),  # truncated
    lambda c: (c / "test.npy").unlink(),  # killed between the two files (the JSON is the seal)
    lambda c: (c / "test.json").write_text("{not json"),
    lambda c: (c / "test.json").write_text('{"version": 0}'),
], ids=["pixel", "truncated", "no-npy", "bad-json", "old-version"])
def test_a_bad_cache_is_rebuilt(jpeg_root, cache, capsys, damage):
    tarball = jpeg_root / "test.tar.gz"
    good = load_split(tarball, "test")
    damage(cache / good.sha256)
    rebuilt = load_split(tarball, "test")
    assert not rebuilt.cached and "unusable cache" in capsys.readouterr().out
    np.testing.assert_array_equal(rebuilt.data, good.data)
    assert load_split(tarball, "test").cached  # and the cache is whole again


def test_an_unwritable_cache_only_costs_the_decode(jpeg_root, cache, capsys):
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the cache folder goes")
    assert not load_split(jpeg_root / "test.tar.gz", "test").cached
    assert "cannot write the cache" in capsys.readouterr().out


def _batches(root: Path) -> None:
    """A tiny cifar-10-batches-py (torchvision's layout) beside the tarballs."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_the_batches_folder_comes_first_then_the_tarballs_and_a_lone_tarball_names_the_other(jpeg_root, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    assert isinstance(build_image_dataset("cifar10", jpeg_root, 32, 3, download=True)["test"].base, JpegCifar10)
    _batches(jpeg_root)
    ds = build_image_dataset("cifar10", jpeg_root, 32, 3, val_fraction=0.5)
    assert type(ds["test"].base) is torchvision.datasets.CIFAR10 and len(ds["test"]) == 2
    (jpeg_root / "test.tar.gz").unlink()
    for entry in (jpeg_root / "cifar-10-batches-py").iterdir():
        entry.unlink()
    (jpeg_root / "cifar-10-batches-py").rmdir()
    with pytest.raises(ConfigError) as err:
        build_image_dataset("cifar10", jpeg_root, 32, 3)
    assert str(err.value).startswith(f"data.root: {jpeg_root / 'test.tar.gz'} not found; cifar10 from JPEGs reads ")


def _good_tar_bytes(tmp_path: Path) -> bytes:
    return _write_tar(tmp_path / "good.tar.gz", _members("test")).read_bytes()


BAD = {  # id: (how test.tar.gz is made, what the one line says)
    "truncated": (lambda d: (d / "t").write_bytes(_good_tar_bytes(d)[:3000]), "is not a readable tar.gz"),
    "corrupt": (lambda d: (d / "t").write_bytes(_good_tar_bytes(d)[:2000] + b"\x00" * 64 + _good_tar_bytes(d)[2064:]),
                "is not a readable tar.gz"),
    "not-gzip": (lambda d: (d / "t").write_text("hello"), "is not a readable tar.gz"),
    "trailing-garbage": (lambda d: (d / "t").write_bytes(gzip.compress(gzip.decompress(_good_tar_bytes(d))
                                                                       + b"junk" * 300)), "no tar header"),
    "absolute": (lambda d: _write_tar(d / "t", [("/tmp/test/cat/0.jpg", _jpeg(0, 0))]), "escapes the archive"),
    "dotdot": (lambda d: _write_tar(d / "t", [("test/../../cat/0.jpg", _jpeg(0, 0))]), "escapes the archive"),
    "symlink": (lambda d: _write_tar(d / "t", _members("test"), [_info("test/cat/x.jpg", tarfile.SYMTYPE,
                                                                       link="/etc/passwd")]), "is a link"),
    "hardlink": (lambda d: _write_tar(d / "t", _members("test"), [_info("test/cat/y.jpg", tarfile.LNKTYPE,
                                                                        link="test/cat/0000.jpg")]), "is a link"),
    "device": (lambda d: _write_tar(d / "t", _members("test"), [_info("test/cat/dev", tarfile.CHRTYPE)]),
               "not a plain file or folder"),
    "fifo": (lambda d: _write_tar(d / "t", _members("test"), [_info("test/cat/fifo", tarfile.FIFOTYPE)]),
             "not a plain file or folder"),
    "nine-classes": (lambda d: _write_tar(d / "t", _members("test", CIFAR10_CLASSES[:9])),
                     "class folders are not CIFAR-10's ten (missing truck)"),
    "other-class": (lambda d: _write_tar(d / "t", _members("test", CIFAR10_CLASSES[:9] + ("trucks",))),
                    "(missing truck; unknown 'trucks')"),
    "wrong-split-folder": (lambda d: _write_tar(d / "t", _members("train")), "is not test/<class>/<image>"),
    "too-deep": (lambda d: _write_tar(d / "t", [("test/cat/sub/0.jpg", _jpeg(0, 0))]), "is not test/<class>/<image>"),
    "not-an-image": (lambda d: _write_tar(d / "t", _members("test") + [("test/cat/notes.jpg", b"not a jpeg")]),
                     "is not a decodable JPEG / PNG image (neither JPEG nor PNG data)"),
    "33x32": (lambda d: _write_tar(d / "t", _members("test") + [("test/cat/big.jpg", _jpeg(3, 0, (33, 32)))]),
              "is a 33x32 RGB image, not 32x32 RGB"),
    "grey": (lambda d: _write_tar(d / "t", _members("test") + [("test/cat/grey.jpg", _jpeg(3, 0, mode="L"))]),
             "is a 32x32 L image, not 32x32 RGB"),
    "over-1MB": (lambda d: _write_tar(d / "t", [("test/cat/huge.jpg", b"\xff" * (1 << 20) + b"!")]),
                 "has 1048577 bytes, more than 1048576"),
    "duplicate": (lambda d: _write_tar(d / "t", _members("test") + [("test/cat/0000.jpg", _jpeg(3, 0))]),
                  "appears twice"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_tarball_is_one_config_error_line_naming_it(tmp_path, cache, case):
    make, needle = BAD[case]
    work = tmp_path / "work"
    work.mkdir()
    make(work)
    root = tmp_path / "root"
    root.mkdir()
    _write_tar(root / "train.tar.gz", _members("train"))
    (work / "t").rename(root / "test.tar.gz")
    with pytest.raises(ConfigError) as err:
        build_image_dataset("cifar10", root, 32, 3)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"data.root: {root / 'test.tar.gz'}") and needle in message, \
        message
    assert sorted(p.name for p in root.iterdir()) == ["test.tar.gz", "train.tar.gz"]  # nothing extracted
    assert not list(cache.rglob("test.*"))  # no cache of a refused tarball


def test_a_tarball_of_far_more_members_than_cifar_is_refused(tmp_path, cache, monkeypatch):
    monkeypatch.setitem(cifar_jpeg.CIFAR10_SPLITS, "test", 5)  # at most 2 x 5 members
    tarball = _write_tar(tmp_path / "test.tar.gz", _members("test"))
    with pytest.raises(ConfigError, match=r"test.tar.gz: more than 10 members \(CIFAR-10 test has 5 images\)"):
        load_split(tarball, "test")


@pytest.fixture(scope="module")
def real_cifar(tmp_path_factory):
    """split -> that split of the shared JPEG copy, each decoded once for this module (cache in a temp folder):
    test 3 s, train 15 s on one free core."""
    if not REAL.is_dir():
        pytest.skip(f"../shared/data/cifar10_jpeg not here: {REAL.resolve()} (the real CIFAR-10 JPEG tarballs)")
    cache, read = tmp_path_factory.mktemp("cache"), {}

    def split(name: str) -> JpegCifar10:
        if name not in read:
            with pytest.MonkeyPatch.context() as env:
                env.setenv("DFSSAT_CACHE", str(cache))
                start = time.perf_counter()
                read[name] = load_split(REAL / f"{name}.tar.gz", name)
                print(f"[test] decoded the real CIFAR-10 {name} JPEGs in {time.perf_counter() - start:.1f} s")
        return read[name]
    return split


def _check_real(ds: JpegCifar10, split: str, per_class: int, means: tuple[float, float, float]) -> None:
    assert ds.sha256 == REAL_SHA256[split]  # the copy its README describes
    assert ds.classes == list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    assert ds.data.shape == (10 * per_class, 32, 32, 3) and ds.data.dtype == np.uint8
    assert Counter(ds.targets) == {c: per_class for c in range(10)}
    np.testing.assert_allclose(ds.data.reshape(-1, 3).mean(axis=0) / 255, means, atol=0.01)
    image, label = ds[0]
    assert image.size == (32, 32) and image.mode == "RGB" and label == 0


def test_the_real_cifar10_jpeg_test_split(real_cifar):
    _check_real(real_cifar("test"), "test", 1000, (0.4942, 0.4851, 0.4504))


@pytest.mark.slow
def test_the_real_cifar10_jpeg_train_split(real_cifar):
    _check_real(real_cifar("train"), "train", 5000, (0.4914, 0.4822, 0.4465))
