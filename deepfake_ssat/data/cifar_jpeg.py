"""CIFAR-10 read straight from JPEG tarballs: ``root/train.tar.gz`` (members ``train/<class>/<image>``) and
``root/test.tar.gz`` (``test/<class>/<image>``), class index = sorted folder name = CIFAR's own order.

The tarballs are untrusted input: each is streamed (``tarfile`` ``r:gz``, nothing extracted to disk); a member
that is not a plain file or folder, whose path escapes (absolute, ``..``), that is larger than
:data:`MAX_MEMBER_BYTES`, or that is not a 32x32 RGB image, a class set other than CIFAR-10's, too many members
and a truncated or corrupt archive are each one :class:`ConfigError` line naming the file.

Decoded splits are cached per split as ``<split>.npy`` (uint8 ``[N, 32, 32, 3]``) and ``<split>.json`` (labels,
classes, the images' sha256) under ``<cache>/cifar10_jpeg/<sha256 of the tarball>/`` (:func:`cache_root`), written
atomically and checked on read; an unreadable or inconsistent cache is rebuilt from the tarball. The key is the
tarball's content: a replaced tarball is decoded again, and a cached split still hashes its tarball (~15 ms for
the 16 MB train.tar.gz) but never opens it as an archive. Cached images are memory-mapped (read-only, shared by
the loader's workers); decoded ones are made read-only too.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError
from torchvision.datasets import VisionDataset

from ..config import ConfigError
from ..io import atomic_write, atomic_write_json, first_line, sha256_file

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_SPLITS = {"train": 50_000, "test": 10_000}  # split -> CIFAR-10's image count
JPEG_LAYOUT = "root/train.tar.gz + root/test.tar.gz (members train/<class>/<image>, test/<class>/<image>)"
MAX_MEMBER_BYTES = 1 << 20  # a 32x32 JPEG is ~1 KB
MAX_GZIP_CHECK_BYTES = 1 << 30  # decompressed bytes read to tell a corrupt archive from a bad image
MAX_TRAILING_BYTES = 1 << 20  # end-of-archive zeros (tar pads to 10 KB records)
MAX_MEMBERS_FACTOR = 2  # members (images + folders) allowed per tarball: this many times CIFAR's image count
CACHE_ENV = "DFSSAT_CACHE"  # overrides the package's cache folder ($XDG_CACHE_HOME or ~/.cache, /deepfake_ssat)
CACHE_VERSION = 1
IMAGE_SHAPE = (32, 32, 3)


class JpegCifar10(VisionDataset):
    """One split of CIFAR-10 decoded from its JPEG tarball, as torchvision's ``CIFAR10`` gives it: items
    ``(PIL RGB image 32x32, label)``, ``.data`` uint8 ``[N, 32, 32, 3]``, ``.targets``, ``.classes``."""

    def __init__(self, tarball: Path, data: np.ndarray, targets: list[int], sha256: str, cached: bool):
        super().__init__(str(tarball.parent))
        self.tarball, self.data, self.targets, self.sha256, self.cached = tarball, data, targets, sha256, cached
        self.classes = list(CIFAR10_CLASSES)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.data[index]), self.targets[index]

    def describe(self) -> str:
        """Where the images come from and how many each class holds (CIFAR-10: 5,000 / 1,000 per class)."""
        counts = Counter(self.targets)
        low, high = min(counts.values()), max(counts.values())
        per_class = f"{low} per class" if low == high else f"{low}-{high} per class"
        return (f"{self.tarball.name} {self.sha256[:12]}: {len(self)} JPEGs, {per_class}, "
                f"{'from the cache' if self.cached else 'decoded'}")


def cache_root() -> Path:
    """The package's cache folder: ``$DFSSAT_CACHE``, else ``$XDG_CACHE_HOME/deepfake_ssat``, else
    ``~/.cache/deepfake_ssat``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "deepfake_ssat"


def has_jpeg_tarballs(root: Path) -> bool:
    """Whether ``root`` holds either CIFAR-10 JPEG tarball (the other, if missing, is then an error)."""
    return any((root / f"{split}.tar.gz").is_file() for split in CIFAR10_SPLITS)


def open_cifar10_jpeg(root: Path) -> dict[str, JpegCifar10]:
    """``{"train", "test"}`` of CIFAR-10 from the JPEG tarballs in ``root``, from the cache where it holds them."""
    splits = {}
    for split in CIFAR10_SPLITS:
        tarball = root / f"{split}.tar.gz"
        if not tarball.is_file():
            raise ConfigError(f"data.root: {tarball} not found; cifar10 from JPEGs reads {JPEG_LAYOUT}")
        splits[split] = load_split(tarball, split)
    return splits


def load_split(tarball: Path, split: str) -> JpegCifar10:
    """One split: the cached arrays for this tarball's sha256 if they are sound, else the tarball decoded (and
    cached; a cache folder that cannot be written only costs the next run the decode again)."""
    try:
        sha = sha256_file(tarball)
    except OSError as e:
        raise ConfigError(f"data.root: cannot read {tarball} ({first_line(e)})") from None
    cache = cache_root() / "cifar10_jpeg" / sha / split
    if cache.with_suffix(".json").is_file():
        try:
            images, labels = read_cache(cache)
            return JpegCifar10(tarball, images, labels, sha, cached=True)
        except ValueError as e:
            print(f"[data] {cache}.json: unusable cache ({first_line(e)}); decoding {tarball} again", flush=True)
    images, labels = read_cifar10_tarball(tarball, split)
    try:
        write_cache(cache, images, labels, sha)
    except OSError as e:
        print(f"[data] {cache}.json: cannot write the cache ({first_line(e)}); the next run decodes again", flush=True)
    return JpegCifar10(tarball, images, labels, sha, cached=False)


def write_cache(cache: Path, images: np.ndarray, labels: list[int], tarball_sha256: str) -> None:
    """``<cache>.npy`` (the images) then ``<cache>.json`` (labels, classes and the images' sha256), each written
    atomically: the JSON, written last, is the cache's seal, so a run killed in between leaves no usable half."""
    atomic_write(cache.with_suffix(".npy"), lambda f: np.save(f, images, allow_pickle=False))
    atomic_write_json(cache.with_suffix(".json"), {
        "version": CACHE_VERSION, "tarball_sha256": tarball_sha256, "classes": list(CIFAR10_CLASSES),
        "shape": list(images.shape), "images_sha256": hashlib.sha256(images.data).hexdigest(), "labels": labels})


def read_cache(cache: Path) -> tuple[np.ndarray, list[int]]:
    """``(images uint8 [N, 32, 32, 3], labels)`` of a cache :func:`write_cache` wrote whole; ValueError for
    anything else (unreadable, another version, other classes, images whose bytes changed)."""
    try:
        meta = json.loads(cache.with_suffix(".json").read_text())
        images = np.load(cache.with_suffix(".npy"), mmap_mode="r", allow_pickle=False)
    except (OSError, EOFError, ValueError) as e:
        raise ValueError(f"unreadable: {first_line(e)}") from None
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise ValueError(f"not a version {CACHE_VERSION} cache")
    labels = meta.get("labels")
    if meta.get("classes") != list(CIFAR10_CLASSES) or not isinstance(labels, list):
        raise ValueError("its classes or labels are not CIFAR-10's")
    if images.dtype != np.uint8 or list(images.shape) != meta.get("shape") or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images {images.dtype} {list(images.shape)}, not uint8 {meta.get('shape')}")
    if len(labels) != len(images) or not all(type(y) is int and 0 <= y < len(CIFAR10_CLASSES) for y in labels):
        raise ValueError(f"labels are not {len(images)} class indices")
    if hashlib.sha256(memoryview(images)).hexdigest() != meta.get("images_sha256"):
        raise ValueError("images differ from the sha256 the cache recorded")
    return images, labels


def read_cifar10_tarball(tarball: Path, split: str) -> tuple[np.ndarray, list[int]]:
    """Decode every image of ``tarball`` (members ``<split>/<class>/<image>``), streamed and never extracted:
    ``(images uint8 [N, 32, 32, 3], labels)`` ordered by (class, member name)."""
    limit = MAX_MEMBERS_FACTOR * CIFAR10_SPLITS[split]
    found: dict[tuple[str, str], np.ndarray] = {}
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            count = 0
            while (member := archive.next()) is not None:
                archive.members.clear()  # headers are not kept: memory stays flat over 50,000 members
                count += 1
                if count > limit:
                    raise ConfigError(f"data.root: {tarball}: more than {limit} members (CIFAR-10 {split} has "
                                      f"{CIFAR10_SPLITS[split]} images); not a CIFAR-10 tarball")
                place = _member_place(tarball, member, split)
                if place is None:
                    continue
                if place in found:
                    raise ConfigError(f"data.root: {tarball}: member {member.name!r} appears twice; repack it")
                try:
                    found[place] = _decode_member(tarball, member, archive.extractfile(member).read())
                except ConfigError:
                    _check_gzip(tarball)  # a corrupt archive, not a bad image, is the likelier cause
                    raise
            _check_end(tarball, archive)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise _corrupt(tarball, e) from None
    _check_classes(tarball, {cls for cls, _ in found})
    order = sorted(found)
    index = {cls: i for i, cls in enumerate(CIFAR10_CLASSES)}
    images = np.stack([found[place] for place in order])
    images.flags.writeable = False  # as the memory-mapped cache gives them
    return images, [index[cls] for cls, _ in order]


def _corrupt(tarball: Path, error: BaseException) -> ConfigError:
    return ConfigError(f"data.root: {tarball} is not a readable tar.gz (truncated or corrupt: {first_line(error)}); "
                       f"replace it with a fresh copy")


def _check_gzip(tarball: Path) -> None:
    """Raise :func:`_corrupt`'s error unless ``tarball`` decompresses whole (its CRC checked at the end; up to
    :data:`MAX_GZIP_CHECK_BYTES`)."""
    left = MAX_GZIP_CHECK_BYTES
    try:
        with gzip.open(tarball, "rb") as stream:
            while left > 0 and (chunk := stream.read(1 << 20)):
                left -= len(chunk)
    except (EOFError, OSError, zlib.error) as e:
        raise _corrupt(tarball, e) from None


def _check_end(tarball: Path, archive: tarfile.TarFile) -> None:
    """Refuse what follows the last member unless it is the end-of-archive zeros, read to the gzip's end (its
    CRC): tarfile ends quietly at a corrupt header after the first, which would drop the members behind it."""
    archive.fileobj.seek(archive.offset)
    left = MAX_TRAILING_BYTES
    while chunk := archive.fileobj.read(1 << 16):
        left -= len(chunk)
        if left < 0 or chunk.count(0) != len(chunk):
            what = f"more than {MAX_TRAILING_BYTES} bytes" if left < 0 else "data that is no tar header"
            raise ConfigError(f"data.root: {tarball}: {what} after byte {archive.offset} of the archive (corrupt "
                              f"header or trailing data); replace it with a fresh copy")


def _member_place(tarball: Path, member: tarfile.TarInfo, split: str) -> tuple[str, str] | None:
    """``(class, file name)`` of an image member, None for the split's folders; ConfigError for anything else."""
    name = member.name
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if name.startswith("/") or ".." in parts or "\\" in name:
        raise ConfigError(f"data.root: {tarball}: member {name!r} escapes the archive (absolute or ..); refused, "
                          f"nothing extracted")
    if member.issym() or member.islnk():
        raise ConfigError(f"data.root: {tarball}: member {name!r} is a link; refused, nothing extracted")
    if not (member.isfile() or member.isdir()) or member.issparse():
        raise ConfigError(f"data.root: {tarball}: member {name!r} is not a plain file or folder (a device, fifo or "
                          f"sparse file); refused, nothing extracted")
    where_ok = parts[:1] == [split] or not parts
    if member.isdir() and where_ok and len(parts) <= 2:
        return None
    if not (member.isfile() and where_ok and len(parts) == 3):
        raise ConfigError(f"data.root: {tarball}: member {name!r} is not {split}/<class>/<image>; cifar10 from "
                          f"JPEGs reads {JPEG_LAYOUT}")
    if member.size > MAX_MEMBER_BYTES:
        raise ConfigError(f"data.root: {tarball}: member {name!r} has {member.size} bytes, more than "
                          f"{MAX_MEMBER_BYTES} (a 32x32 JPEG is ~1 KB); not a CIFAR-10 image")
    return parts[1], parts[2]


def _decode_member(tarball: Path, member: tarfile.TarInfo, data: bytes) -> np.ndarray:
    """The member's pixels, uint8 [32, 32, 3]; ConfigError unless ``data`` is a 32x32 RGB JPEG or PNG."""
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG", "PNG")) as image:
            size, mode = image.size, image.mode
            pixels = np.asarray(image) if (size, mode) == (IMAGE_SHAPE[:2], "RGB") else None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = "neither JPEG nor PNG data" if isinstance(e, UnidentifiedImageError) else first_line(e)
        raise ConfigError(f"data.root: {tarball}: member {member.name!r} is not a decodable JPEG / PNG image "
                          f"({reason})") from None
    if pixels is None:
        raise ConfigError(f"data.root: {tarball}: member {member.name!r} is a {size[0]}x{size[1]} {mode} image, "
                          f"not 32x32 RGB; not a CIFAR-10 image")
    return pixels


def _check_classes(tarball: Path, classes: set[str]) -> None:
    if classes != set(CIFAR10_CLASSES):
        missing, extra = sorted(set(CIFAR10_CLASSES) - classes), sorted(classes - set(CIFAR10_CLASSES))
        said = "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                           f"unknown {', '.join(repr(c) for c in extra[:5])}" if extra else "") if part)
        raise ConfigError(f"data.root: {tarball}: class folders are not CIFAR-10's ten ({said}); cifar10 from JPEGs "
                          f"reads {JPEG_LAYOUT} with classes {', '.join(CIFAR10_CLASSES)}")
