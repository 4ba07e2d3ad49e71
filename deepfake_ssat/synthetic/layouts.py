"""Small DFDC-, FaceForensics++- and Celeb-DF-layout datasets of real-codec videos with real faces, for tests and the
demo.

The folder layout, ``metadata.json`` / ``labels.csv`` / test lists and split files follow the real datasets
(:func:`write_dfdc`, :func:`write_dfdc_test`, :func:`write_ffpp`, :func:`write_celebdf`), so extraction and the
training datasets read them exactly as they read DFDC / FF++ / Celeb-DF. The faces are synthetic stand-ins, not a
benchmark.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .scenes import MANIPULATIONS, FacePath, write_face_video


@dataclass(frozen=True)
class VideoSpec:
    """Frame size, length and face scale of the generated videos.

    Every video shows the astronaut (``skimage.data.astronaut()``) on its own path (camera motion,
    scale), background and lighting drift; a fake repeats its original's path with one of
    :data:`~deepfake_ssat.synthetic.scenes.MANIPULATIONS` applied.
    """
    width: int = 160
    height: int = 120
    num_frames: int = 12
    face_scale: float = 0.35  # astronaut image scale: its face is ~ 100 x 120 px times this


def _scene(rng: np.random.Generator, spec: VideoSpec) -> tuple[FacePath, np.ndarray]:
    """A random face path inside the frame and a background image with a lighting gradient."""
    s0 = spec.face_scale * rng.uniform(0.9, 1.1)
    s1 = s0 * rng.uniform(0.9, 1.15)
    face_w, face_h = 87 * s1, 110 * s1  # astronaut face box size at scale 1: 87 x 110
    left, top = -181 * s1, -62 * s1  # image corner such that the face box starts at the frame corner

    def position() -> tuple[float, float]:
        return (left + rng.uniform(2, max(spec.width - face_w - 2, 3)),
                top + rng.uniform(2, max(spec.height - face_h - 2, 3)))

    (x0, y0), (x1, y1) = position(), position()
    colour = rng.uniform(40, 200, size=3)
    ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.4), spec.width)[None, :, None]
    background = (np.ones((spec.height, spec.width, 3)) * colour * ramp).clip(0, 255).astype(np.uint8)
    return FacePath(x0, y0, s0, x1, y1, s1), background


def write_dfdc(root: str | Path, num_parts: int = 3, originals_per_part: int = 2, fakes_per_original: int = 2,
               spec: VideoSpec = VideoSpec(), seed: int = 0) -> list[Path]:
    """``root/dfdc_train_part_{i}/`` with videos and a DFDC ``metadata.json`` each; returns the part folders.

    Each fake (``FAKE``, ``original`` = its source) uses a manipulation drawn from
    :data:`MANIPULATIONS` in turn, so every method appears when there are enough fakes.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    methods = list(MANIPULATIONS)
    parts, n_fake = [], 0
    for p in range(num_parts):
        part = root / f"dfdc_train_part_{p}"
        part.mkdir(parents=True, exist_ok=True)
        meta = {}
        for o in range(originals_per_part):
            path, background = _scene(rng, spec)
            name = f"p{p}o{o}.mp4"
            write_face_video(part / name, spec.width, spec.height, spec.num_frames, [path], background=background)
            meta[name] = {"label": "REAL", "split": "train", "original": None}
            for f in range(fakes_per_original):
                fake = f"p{p}o{o}f{f}.mp4"
                method = methods[n_fake % len(methods)]
                n_fake += 1
                write_face_video(part / fake, spec.width, spec.height, spec.num_frames, [path],
                                 background=background, manipulation=MANIPULATIONS[method])
                meta[fake] = {"label": "FAKE", "split": "train", "original": name}
        (part / "metadata.json").write_text(json.dumps(meta, indent=1))
        parts.append(part)
    return parts


def write_ffpp(root: str | Path, split_pairs: dict[str, int] | None = None, compression: str = "c23",
               methods: tuple[str, ...] = tuple(MANIPULATIONS), spec: VideoSpec = VideoSpec(),
               seed: int = 1) -> Path:
    """An FF++ root: ``original_sequences/youtube/<c>/videos/<id>.mp4``, ``manipulated_sequences/<Method>/
    <c>/videos/<target>_<source>.mp4`` and ``splits/{train,val,test}.json`` (pairs ``[a, b]`` giving
    reals ``a``, ``b`` and fakes ``a_b``, ``b_a``); ``split_pairs`` = pairs per split. Returns ``root``."""
    root = Path(root)
    split_pairs = split_pairs or {"train": 2, "val": 1, "test": 1}
    rng = np.random.default_rng(seed)
    real_dir = root / "original_sequences" / "youtube" / compression / "videos"
    real_dir.mkdir(parents=True, exist_ok=True)
    (root / "splits").mkdir(exist_ok=True)
    next_id = 0
    for split, count in split_pairs.items():
        pairs = []
        for _ in range(count):
            a, b = f"{next_id:03d}", f"{next_id + 1:03d}"
            next_id += 2
            pairs.append([a, b])
            scenes = {vid: _scene(rng, spec) for vid in (a, b)}
            for vid, (path, background) in scenes.items():
                write_face_video(real_dir / f"{vid}.mp4", spec.width, spec.height, spec.num_frames, [path],
                                 background=background)
            for target, source in ((a, b), (b, a)):
                path, background = scenes[target]
                for method in methods:
                    out = root / "manipulated_sequences" / method / compression / "videos"
                    out.mkdir(parents=True, exist_ok=True)
                    write_face_video(out / f"{target}_{source}.mp4", spec.width, spec.height, spec.num_frames,
                                     [path], background=background, manipulation=MANIPULATIONS[method])
        (root / "splits" / f"{split}.json").write_text(json.dumps(pairs))
    return root


def write_dfdc_test(folder: str | Path, num_real: int = 2, num_fake: int = 2, spec: VideoSpec = VideoSpec(),
                    seed: int = 2) -> Path:
    """The DFDC public test set's layout: videos with DFDC-like random names (``<10 letters>.mp4``) beside a
    ``labels.csv`` (``filename,label``, 1 = fake). Fakes cycle through :data:`MANIPULATIONS`. Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    methods = list(MANIPULATIONS)
    rows = ["filename,label"]
    for i in range(num_real + num_fake):
        name = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 10)) + ".mp4"
        path, background = _scene(rng, spec)
        fake = i >= num_real
        manipulation = MANIPULATIONS[methods[(i - num_real) % len(methods)]] if fake else None
        write_face_video(folder / name, spec.width, spec.height, spec.num_frames, [path], background=background,
                         manipulation=manipulation)
        rows.append(f"{name},{int(fake)}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def write_celebdf(root: str | Path, num_ids: int = 3, youtube_real: int = 2, test_ids: int = 1,
                  spec: VideoSpec = VideoSpec(), seed: int = 3) -> Path:
    """A Celeb-DF v2 root: ``Celeb-real/id<N>_0000.mp4`` (one per identity), ``Celeb-synthesis/id<N>_id<M>_0000.mp4``
    (identity N's video with M = N + 1 (mod ``num_ids``) swapped in: one fake per identity),
    ``YouTube-real/<5 digits>.mp4`` and ``List_of_testing_videos.txt`` in the official format (``<label>
    <folder>/<file>``, **1 = real**). The list names every video of the last ``test_ids`` identities (as target or
    source) and the last YouTube video. Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    methods = list(MANIPULATIONS)
    tested = set(range(num_ids - test_ids, num_ids))
    listed = []
    for folder in ("Celeb-real", "Celeb-synthesis", "YouTube-real"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for n in range(num_ids):
        path, background = _scene(rng, spec)
        m = (n + 1) % num_ids
        real, fake = f"Celeb-real/id{n}_0000.mp4", f"Celeb-synthesis/id{n}_id{m}_0000.mp4"
        write_face_video(root / real, spec.width, spec.height, spec.num_frames, [path], background=background)
        write_face_video(root / fake, spec.width, spec.height, spec.num_frames, [path], background=background,
                         manipulation=MANIPULATIONS[methods[n % len(methods)]])
        if n in tested:
            listed.append(f"1 {real}")
        if {n, m} & tested:
            listed.append(f"0 {fake}")
    for k in range(youtube_real):
        path, background = _scene(rng, spec)
        name = f"YouTube-real/{k:05d}.mp4"
        write_face_video(root / name, spec.width, spec.height, spec.num_frames, [path], background=background)
        if k == youtube_real - 1:
            listed.append(f"1 {name}")
    (root / "List_of_testing_videos.txt").write_text("\n".join(listed) + "\n")
    return root
