"""Face-clip datasets (issue 4) over real extractions of real-face videos (see conftest.face_data)."""
import hashlib
import itertools
import json
import platform
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from deepfake_ssat.config import ConfigError, load_config
from deepfake_ssat.data import EpochSampler, SeededItems, build_datasets, build_face_clips
from deepfake_ssat.data.faceclips import DatasetError, FaceClipDataset, scan_extraction
from deepfake_ssat.data.sampling import class_balance_weights
from deepfake_ssat.data.splits import split_celebdf
from deepfake_ssat.data.transforms import ClipAugmentation, clip_positions

ROOT = Path(__file__).resolve().parents[1]


def _dfdc(face_data, **kw):
    return build_face_clips("dfdc", face_data.dfdc, 32, 8, **kw)


def _ffpp(face_data, **kw):
    return build_face_clips("ffpp", face_data.ffpp, 32, 8, splits_dir=face_data.splits, **kw)


def test_dfdc_folds_are_parts_and_items_are_clips(face_data):
    ds = _dfdc(face_data, eval_clips=3)
    parts = {split: {v.part for v in d.videos} for split, d in ds.items()}
    assert all(len(p) == 1 for p in parts.values())  # 3 parts: one per fold
    assert len(set.union(*parts.values())) == 3
    for d in ds.values():  # every original sits in the fold of its fakes
        names = {v.video_id for v in d.videos}
        assert all(Path(v.original).stem in names for v in d.videos if v.original)
        assert Counter(v.label for v in d.videos) == {0: 2, 1: 4}
    x, y, key = ds["train"][0]
    assert x.shape == (3, 8, 32, 32) and x.dtype == torch.float32 and y in (0, 1)
    assert key.startswith("dfdc/-/-/p") and abs(x.mean().item()) < 3
    # 8 stored frames, clips of 8: exactly one window per video at evaluation
    assert len(ds["val"]) == len(ds["val"].videos)
    named = _dfdc(face_data, val_parts=["2"], test_parts=["dfdc_train_part_0"])
    assert {v.part for v in named["val"].videos} == {"dfdc_train_part_2"}
    assert {v.part for v in named["test"].videos} == {"dfdc_train_part_0"}
    with pytest.raises(DatasetError, match="data.faces.val_parts: 7: no extracted videos from part dfdc_train_part_7"):
        _dfdc(face_data, val_parts=["7"])


def test_eval_clips_spread_over_long_videos(face_data):
    ds = build_face_clips("dfdc", face_data.dfdc, 32, 4, frame_step=1, eval_clips=3)
    video = ds["val"].videos[0]
    starts = [(s, p) for v, s, p in ds["val"].items if v == 0]
    assert len(starts) == 3 and starts[0][1] == 0 and starts[-1][1] == len(video.segments[0]) - 4
    assert clip_positions(5, 4, 2, 0) == [0, 2, 4, 4]  # clamped to the last crop (padding)


def test_one_augmentation_draw_for_every_frame(tmp_path):
    """A video whose crops are all the same image gives clips whose frames are all the same: crop box,
    flip, colour, JPEG, noise and blur are drawn once per clip; and the draws differ between clips."""
    from deepfake_ssat.synthetic.scenes import astronaut

    face = cv2.resize(astronaut()[40:240, 120:320], (64, 64))
    _fake_extraction(tmp_path, "dfdc/x", 1, "dfdc", None, "x", image=face)
    videos, _ = scan_extraction(tmp_path, 8, 1, 48)
    train = SeededItems(FaceClipDataset(videos, 48, 8, train=True, augment=True))
    clips = [train[(0, seed)][0] for seed in range(6)]
    for clip in clips:
        assert clip.shape == (3, 8, 48, 48)
        assert all(torch.equal(clip[:, 0], clip[:, t]) for t in range(8))
    assert len({round(c.sum().item(), 3) for c in clips}) == 6
    plain = FaceClipDataset(videos, 48, 8, train=False)[0][0]  # eval: resize only, ImageNet-normalised
    expected = (cv2.resize(face, (48, 48), interpolation=cv2.INTER_AREA) / 255.0 - np.array(
        [0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(plain[:, 0].permute(1, 2, 0).numpy(), expected, atol=1e-5)


def test_augmentations_are_drawn_independently():
    """Each photometric transform of a training clip is applied with its own probability, independently of the
    others. (Seeding each clip with albumentations' Compose.set_random_seed gives every transform the same seed:
    their draws coincide, and the blur (p 0.1) was only ever applied together with all the others.)"""
    aug = ClipAugmentation(8)
    names, probabilities = [type(t).__name__ for t in aug.photometric], [t.p for t in aug.photometric]
    applied: list[set] = []
    for transform, name in zip(aug.photometric, names):
        def spy(params, *args, _name=name, _apply=transform.apply_with_params, **data):
            applied[-1].add(_name)
            return _apply(params, *args, **data)
        transform.apply_with_params = spy
    frames, clips = np.full((2, 16, 16, 3), 120, np.uint8), 800
    for seed in range(clips):
        random.seed(seed)
        applied.append(set())
        aug(frames)

    def rate(*chosen):
        return sum(set(chosen) <= done for done in applied) / clips
    for name, p in zip(names, probabilities):
        assert abs(rate(name) - p) < 0.05, name
    for (a, pa), (b, pb) in itertools.combinations(zip(names, probabilities), 2):
        assert abs(rate(a, b) - pa * pb) < 0.04, (a, b, rate(a, b))


def test_clip_transforms_equal_albumentations():
    """The recipe's faster clip paths (data/augment.py) give albumentations' own frames for the same seed: the
    hue-saturation and noise transforms alone (always applied, many draws) and the whole recipe, on a real-face
    clip with grey, black and white pixels (the saturation mask and the noise's clipping); other input is left
    to albumentations."""
    import albumentations as A

    from deepfake_ssat.data.augment import ClipGaussNoise, ClipHueSaturationValue
    from deepfake_ssat.data.transforms import photometric_transform
    from deepfake_ssat.synthetic.scenes import astronaut

    face = cv2.resize(astronaut()[40:240, 120:320], (48, 48))
    clip = np.stack([np.roll(face, 3 * t, axis=1) for t in range(6)])  # [6, 48, 48, 3]
    clip[:, :6], clip[:, 6:12], clip[:, 12:18] = 128, 0, 255
    hsv = dict(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=1)
    noise, strong = dict(std_range=(0.01, 0.05), p=1), dict(std_range=(0.3, 0.5), p=1)
    stock_recipe = A.Compose([  # photometric_transform() with albumentations' own classes
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        A.HueSaturationValue(hue_shift_limit=5, sat_shift_limit=15, val_shift_limit=10, p=0.3),
        A.ImageCompression(quality_range=(50, 100), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.05), p=0.2),
        A.GaussianBlur(blur_limit=(3, 5), p=0.1)])
    pairs = [(A.Compose([A.HueSaturationValue(**hsv)]), A.Compose([ClipHueSaturationValue(**hsv)])),
             (A.Compose([A.GaussNoise(**noise)]), A.Compose([ClipGaussNoise(**noise)])),
             (A.Compose([A.GaussNoise(**strong)]), A.Compose([ClipGaussNoise(**strong)])),
             (stock_recipe, photometric_transform())]
    for (reference, fast), seed in ((pair, seed) for pair in pairs for seed in range(40)):
        reference.set_random_state(np.random.default_rng(seed), random.Random(seed))
        fast.set_random_state(np.random.default_rng(seed), random.Random(seed))
        expected, got = reference(images=clip)["images"], fast(images=clip)["images"]
        assert got.dtype == np.uint8 and np.array_equal(got, expected), (fast, seed)
    changed = [not np.array_equal(pair[1](images=clip)["images"], clip) for pair in pairs[:3]]
    assert all(changed)
    grey = clip[..., :1]  # [6, 48, 48, 1]: albumentations' own path
    assert pairs[1][1](images=grey)["images"].shape == grey.shape


def test_seeded_items_reproduce_augmentation(face_data):
    train = SeededItems(_dfdc(face_data)["train"])
    a, b, c = train[(0, 11)][0], train[(0, 11)][0], train[(0, 12)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)


class _Draws(torch.utils.data.Dataset):
    """Item i: one draw each from Python's, NumPy's and torch's global generators."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return torch.tensor([random.random(), np.random.random(), torch.rand(()).item()], dtype=torch.float64)


def test_seeded_items_in_loader_workers_and_in_the_main_process():
    """An item depends only on its (index, seed), drawn in loader workers (seeded per item, nothing restored) or in
    the main process, whose own random streams come back untouched."""
    items, keys = SeededItems(_Draws()), [(n % 8, 100 + n) for n in range(12)]

    def seed_all():
        random.seed(5)
        np.random.seed(5)
        torch.manual_seed(5)
    seed_all()
    in_main = [items[key] for key in keys]
    after = (random.random(), np.random.random(), torch.rand(()).item())
    seed_all()
    assert after == (random.random(), np.random.random(), torch.rand(()).item())
    assert len({tuple(x.tolist()) for x in in_main}) == len(keys)
    in_workers = list(DataLoader(items, batch_size=None, sampler=keys, num_workers=2))
    assert all(torch.equal(a, b) for a, b in zip(in_main, in_workers, strict=True))
    # restore=False (what the loader benchmark times): a worker's way in this process, the same items, and the
    # generators are left as the last item's seed left them
    as_worker = SeededItems(_Draws(), restore=False)
    seed_all()
    assert all(torch.equal(as_worker[key], x) for key, x in zip(keys, in_main, strict=True))
    left = random.random()
    random.seed(keys[-1][1])
    random.random()  # the last item's draw
    assert left == random.random()


def test_building_datasets_pauses_the_garbage_collector(face_data, tmp_path, monkeypatch):
    """The cyclic GC is paused while index rows or manifests become videos (io.paused_gc: 40 % of DFDC-scale
    start-up) and comes back as it was: on after a scan, a build, a walk or an error; still off for a caller that
    had turned it off."""
    import gc

    import deepfake_ssat.data.faceclips as fc
    import deepfake_ssat.faces.store as store

    seen, read_rows, find_files = [], fc._read_rows, store.find_files
    monkeypatch.setattr(fc, "_read_rows", lambda root: seen.append(gc.isenabled()) or read_rows(root))
    monkeypatch.setattr(store, "find_files", lambda root, name: seen.append(gc.isenabled()) or find_files(root, name))
    assert gc.isenabled()
    scan_extraction(face_data.dfdc, 8, 1, 32)
    _dfdc(face_data)
    assert store.walk_rows(face_data.dfdc)
    assert seen == [False, False, False] and gc.isenabled()
    with pytest.raises(DatasetError, match="holds no extracted faces"):
        scan_extraction(tmp_path, 8, 1, 32)
    assert gc.isenabled()
    gc.disable()
    try:
        scan_extraction(face_data.dfdc, 8, 1, 32)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_ffpp_official_split_and_method_selection(face_data):
    ds = _ffpp(face_data, exclude_methods=["NeuralTextures"])
    pairs = {s: json.loads((face_data.splits / f"{s}.json").read_text()) for s in ("train", "val", "test")}
    for split, d in ds.items():
        ids = {x for a, b in pairs[split] for x in (a, b, f"{a}_{b}", f"{b}_{a}")}
        assert {v.video_id for v in d.videos} <= ids
        assert {v.method for v in d.videos} == {"original", "Deepfakes", "Face2Face", "FaceSwap"}
        assert len(d.videos) == len({v.key for v in d.videos})  # same id, different methods: distinct keys
    test_keys = {v.key for v in ds["test"].videos}
    assert "ffpp/Deepfakes/c23/007_006" in test_keys and "ffpp/Face2Face/c23/007_006" in test_keys
    only = _ffpp(face_data, methods=["NeuralTextures"])
    assert {v.method for v in only["train"].videos} == {"original", "NeuralTextures"}
    with pytest.raises(DatasetError, match="data.faces.exclude_methods: FaceShifter: no extracted FF\\+\\+ videos"):
        _ffpp(face_data, exclude_methods=["FaceShifter"])
    with pytest.raises(DatasetError, match="split 'train' is empty"):
        _ffpp(face_data, compression="c40")
    with pytest.raises(DatasetError, match="data.faces.splits_dir: .*train.json not found"):
        build_face_clips("ffpp", face_data.ffpp, 32, 8, splits_dir=face_data.root / "nowhere")


def _fake_extraction(root: Path, rel: str, label: int, dataset: str, method: str, video_id: str,
                     frames: int = 8, crop: int = 48, image: np.ndarray | None = None, **params) -> None:
    """A manifest + crops as tools/extract_faces.py writes them (no video needed); ``image`` (RGB) for
    every crop, else flat grey levels."""
    folder = root / rel
    folder.mkdir(parents=True)
    crops = []
    if image is not None:
        crop = image.shape[0]
    for i in range(frames):
        pixels = np.full((crop, crop, 3), 40 * label + i, np.uint8) if image is None else image[..., ::-1]
        cv2.imwrite(str(folder / f"{i:06d}.png"), pixels)
        crops.append({"frame": i, "file": f"{i:06d}.png", "track": 0})
    sampling = params.pop("sampling", {"mode": "uniform", "frames": frames})
    manifest = {"tool": "deepfake_ssat.faces", "status": "ok", "dataset": dataset, "method": method,
                "compression": None, "video_id": video_id, "part": None, "label": label, "original": None,
                "clips": None, "crops": crops, "params": {"crop_size": crop, "sampling": sampling, **params}}
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_celebdf_test_list_label_convention(tmp_path):
    root = tmp_path / "faces"
    videos = [("Celeb-real", "id0_0000", 0), ("Celeb-real", "id1_0000", 0), ("YouTube-real", "00001", 0),
              ("Celeb-synthesis", "id0_id1_0000", 1), ("Celeb-synthesis", "id1_id0_0000", 1),
              ("Celeb-synthesis", "id2_id0_0001", 1), ("Celeb-real", "id2_0001", 0)]
    for folder, vid, label in videos:
        _fake_extraction(root, f"celebdf/{folder}/{vid}", label, "celebdf", folder, vid)
    listing = tmp_path / "List_of_testing_videos.txt"
    listing.write_text("1 Celeb-real/id0_0000.mp4\n0 Celeb-synthesis/id0_id1_0000.mp4\n")
    videos_found, _ = scan_extraction(root, 8, 1, 32)
    splits = split_celebdf(videos_found, listing, 0.3, 0)
    assert {(v.video_id, v.label) for v in splits["test"]} == {("id0_0000", 0), ("id0_id1_0000", 1)}
    assert len(splits["train"]) + len(splits["val"]) == 5
    listing.write_text("0 Celeb-real/id0_0000.mp4\n")  # says fake: contradicts the folder
    with pytest.raises(DatasetError, match="id0_0000 is listed as fake"):
        split_celebdf(videos_found, listing, 0.3, 0)
    listing.write_text("real Celeb-real/id0_0000.mp4\n")
    with pytest.raises(DatasetError, match="line 1: expected"):
        split_celebdf(videos_found, listing, 0.3, 0)


def test_extraction_that_does_not_match_the_config(tmp_path, face_data):
    with pytest.raises(DatasetError, match="crops are 48 px but model.img_size is 64; re-extract with --size 64"):
        build_face_clips("dfdc", face_data.dfdc, 64, 8)
    with pytest.raises(DatasetError, match="stored 8 frames per video but a clip of model.num_frames=8 with "
                                           "data.faces.frame_step=2 needs 15"):
        build_face_clips("dfdc", face_data.dfdc, 32, 8, frame_step=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="holds no extracted faces .* run dfssat-extract-faces"):
        build_face_clips("dfdc", empty, 32, 8)
    mixed = tmp_path / "mixed"
    _fake_extraction(mixed, "a/x", 0, "dfdc", None, "x")
    _fake_extraction(mixed, "a/y", 1, "dfdc", None, "y", crop=64)
    with pytest.raises(DatasetError, match="were extracted with different parameters"):
        scan_extraction(mixed, 8, 1, 32)
    clips = tmp_path / "clips"
    _fake_extraction(clips, "a/x", 0, "dfdc", None, "x",
                     sampling={"mode": "clips", "clips": 2, "clip_len": 4, "stride": 2})
    with pytest.raises(DatasetError, match="stored 4 frames per clip"):
        scan_extraction(clips, 8, 1, 32)


def test_unusable_videos_are_reported_not_dropped_silently(tmp_path, face_data, capsys):
    root = tmp_path / "faces"
    shutil.copytree(face_data.dfdc, root)
    manifest = next(root.rglob("manifest.json"))
    m = json.loads(manifest.read_text())
    m["status"], m["crops"] = "no_face", []
    manifest.write_text(json.dumps(m))
    (root / "index.jsonl").unlink()  # no index: every manifest is read (and a line says how to write the index)
    build_face_clips("dfdc", root, 32, 8)
    assert "videos left out: 1 no_face" in capsys.readouterr().out
    ds = build_face_clips("dfdc", root, 32, 8)
    video = ds["val"].videos[0]
    broken = video.container.path
    broken.write_bytes(b"not a tar")
    with pytest.raises(DatasetError, match=f"{broken}: corrupt crop container"):
        ds["val"][0]


def test_build_datasets_errors_name_the_key(tmp_path):
    cfg = load_config("video/tiny/dfdc_videomae_095")
    with pytest.raises(ConfigError, match="data.root: dfdc needs the output folder of dfssat-extract-faces"):
        build_datasets(cfg.data, 32, 3, 8)
    cfg = load_config("video/tiny/dfdc_videomae_095", [f"data.root={tmp_path / 'nope'}"])
    with pytest.raises(ConfigError, match="does not exist"):
        build_datasets(cfg.data, 32, 3, 8)


def test_balanced_and_sharded_sampling():
    labels = [1] * 82 + [0] * 18
    sampler = EpochSampler(100, seed=0, weights=class_balance_weights(labels))
    drawn = Counter(labels[i] for epoch in range(20) for i, _ in (sampler.set_epoch(epoch) or sampler))
    assert abs(drawn[0] / sum(drawn.values()) - 0.5) < 0.05
    one = EpochSampler(10, seed=3)
    ranks = [EpochSampler(10, seed=3, rank=r, world_size=2) for r in range(2)]
    order = [i for i, _ in one]
    assert [i for i, _ in ranks[0]] == order[0::2] and [i for i, _ in ranks[1]] == order[1::2]
    assert {s for _, s in one} == {s for r in ranks for _, s in r}  # same per-item seeds as one process
    ranks[1].set_epoch(0, start=2)
    assert [i for i, _ in ranks[1]] == order[1::2][2:]


def test_data_manifest_hash_names_the_data(face_data):
    from deepfake_ssat.data import manifest_sha256

    def digest(ds):
        return manifest_sha256({split: d.manifest() for split, d in ds.items()})

    first, again = _dfdc(face_data), _dfdc(face_data)
    assert digest(first) == digest(again)
    assert digest(first) != digest(_dfdc(face_data, val_parts=["0"], test_parts=["1"]))  # other folds
    entry = first["train"].manifest()[0]
    assert entry["crops"] == 8 and len(entry["crops_sha1"]) == 40
    # made when the dataset is built, the same entries as from its (packed) videos: earlier runs' hashes still hold
    train = first["train"]
    assert train.manifest() == [{"key": v.key, "label": v.label, "crops": sum(len(s) for s in v.segments),
                                 "crops_sha1": hashlib.sha1(json.dumps(v.segments).encode()).hexdigest()}
                                for v in train.videos]


_FAULTS = """
import resource, sys
from deepfake_ssat.data import FaceClipDataset, SeededItems
from deepfake_ssat.data.faceclips import scan_extraction
from deepfake_ssat.data.workers import init_worker
if sys.argv[2] == "worker":
    init_worker(0)
items = SeededItems(FaceClipDataset(scan_extraction(sys.argv[1], 16, 1, 224)[0], 224, 16, uint8=True))
for n in range(3):
    items[(n % 2, n)]
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for n in range(20):
    items[(n % 2, n)]
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator setting is glibc's (mallopt)")
def test_loader_workers_reuse_clip_memory(tmp_path):
    """init_worker (every loader's worker_init_fn): augmented 16 x 224^2 clips stop faulting in fresh pages
    (glibc maps and unmaps each multi-MB array otherwise: ~1,000 page faults, ~1.5 ms, per clip)."""
    from deepfake_ssat.synthetic.extractions import write_synthetic_extraction

    write_synthetic_extraction(tmp_path, 2, 16, 224, "tar")
    faults = {}
    for mode in ("default", "worker"):
        done = subprocess.run([sys.executable, "-c", _FAULTS, str(tmp_path), mode], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        faults[mode] = float(done.stdout.split()[-1])
    assert faults["default"] > 300 and faults["worker"] < 30, faults


_SHARED = """
import gc, os, sys
from pathlib import Path
import numpy as np, torch
from torch.utils.data import DataLoader
from deepfake_ssat.data import faceclips as fc
from deepfake_ssat.faces.store import Container

def private_mb(pid):
    rollup = open(f"/proc/{pid}/smaps_rollup").read().splitlines()
    return sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty"))) / 1024

class Pid(torch.utils.data.Dataset):  # draws the dataset's item, returns the worker's pid
    def __init__(self, ds):
        self.ds = ds
    def __len__(self):
        return len(self.ds)
    def __getitem__(self, i):
        return self.ds[i][1] * 0 + os.getpid()

def dataset(n):  # DFDC-like videos of 32 crops in a tar; the loader's own list of them is gone, as in fit()
    videos = [fc.FaceVideo(key=f"dfdc/-/-/v{i}", label=i % 2, dir=Path(f"/store/dfdc_train_part_{i % 50}/v{i}"),
                           segments=(tuple((3 * f, f"{3 * f:06d}_0.jpg") for f in range(32)),), dataset="dfdc",
                           method=None, compression=None, video_id=f"v{i}", part=f"dfdc_train_part_{i % 50}",
                           original=None, container=Container(Path(f"/store/v{i}/crops.tar"), "jpg", 8),
                           spans=(np.arange(64, dtype=np.int64).reshape(32, 2),), params={"crop_size": 8})
              for i in range(n)]
    return fc.FaceClipDataset(videos, 8, 4, train=True, augment=False)

if sys.argv[1] == "list":
    fc.PackedVideos = list
fc.read_clip = lambda video, segment, positions: np.zeros((len(positions), 8, 8, 3), np.uint8)
ds = dataset(40000)
gc.collect()
loader = DataLoader(Pid(ds), batch_size=500, shuffle=True, num_workers=2, persistent_workers=True)
batches = iter(loader)
pids = {int(next(batches)[0]) for _ in range(2)}  # one batch from each worker
start = {pid: private_mb(pid) for pid in pids}
assert len(pids) == 2 and sum(len(b) for b in batches) == 39000
print(max(private_mb(pid) - start[pid] for pid in pids))
"""


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="reads Linux's /proc/<pid>/smaps_rollup")
def test_loader_workers_keep_sharing_the_video_list():
    """A forked loader worker reading 40,000 videos' records must not copy them into its own memory. A Python list
    of FaceVideo objects is copied page by page as their reference counts change (~6 KB per video and worker, ~1 GB
    per worker for DFDC); PackedVideos' arrays are never written, so the workers keep sharing them."""
    growth = {}
    for kind in ("list", "packed"):
        done = subprocess.run([sys.executable, "-c", _SHARED, kind], capture_output=True, text=True, timeout=180,
                              cwd=ROOT)
        assert done.returncode == 0, done.stderr[-2000:]
        growth[kind] = float(done.stdout.split()[-1])  # MB a worker stopped sharing while drawing every video
    assert growth["list"] > 60 and growth["packed"] < 15, growth  # measured: ~125 MB vs 2-7 MB


def test_loader_workers_start_after_opencv_ran_in_the_parent():
    """init_worker in workers forked from a process whose OpenCV thread pool has run (the trainer's case: the
    datasets were read first). Changing OpenCV's thread count there deadlocks; init_worker must not."""
    from torch.utils.data import DataLoader

    from deepfake_ssat.data.workers import init_worker

    big = np.zeros((1500, 1500, 3), np.uint8)
    for _ in range(3):
        cv2.resize(big, (2500, 2500))  # multi-threaded in OpenCV: its pool now exists in this process

    class Resized(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.from_numpy(cv2.resize(big, (64, 64)))

    loader = DataLoader(Resized(), batch_size=2, num_workers=2, worker_init_fn=init_worker, timeout=60)
    assert [tuple(b.shape) for b in loader] == [(2, 64, 64, 3)] * 2
