import os
import shutil
from pathlib import Path

import pytest

from deepfake_ssat.config import load_config

ROOT = Path(__file__).resolve().parents[1]
# torch.compile on CPUs (inductor) builds C++ kernels: tests of compiled steps need a compiler
requires_cxx = pytest.mark.skipif(
    not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "clang++")),
    reason="torch.compile on CPUs builds C++ kernels: needs a C++ compiler")


def pytest_configure(config):
    """Under ``pytest -n N`` (pytest-xdist) each worker gets cpu_count / N threads (torch, OpenMP, OpenCV), so a
    16-core GPU box running 16 workers is not oversubscribed 16-fold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:
        import cv2
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)


@pytest.fixture(autouse=True)
def cpu_unless_marked_cuda(request, monkeypatch):
    """Tests not marked ``cuda`` run on the CPU even on a GPU machine, so they assert there what they assert on CI
    (exact resume, bit-identical scores, fp32 instead of CUDA's bf16): an ``auto`` device is the CPU in this process,
    and the tools they start (``run_env``) see no GPU. The marked tests (tests/test_cuda.py) exercise the CUDA paths.
    Pytest collected test_cuda.py first, so this process's CUDA runtime already saw the GPUs."""
    if request.node.get_closest_marker("cuda") is None:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


TINY_DIGITS = """
model:
  name: vit_test
  in_chans: 1
decoder:
  embed_dim: 32
  depth: 1
  num_heads: 4
ssat:
  lam: 0.1
  mask_ratio: 0.75
data:
  name: digits
  loader:
    batch_size: 64
train:
  epochs: 2
  blr: 2.0e-3
  warmup_epochs: 1
  clip_grad: 5.0
  device: cpu
  log_every_steps: 5
"""


@pytest.fixture
def tiny_config_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_DIGITS)
    return path


@pytest.fixture
def tiny_cfg(tiny_config_file: Path):
    def make(*opts: str):
        return load_config(tiny_config_file, list(opts))
    return make


def astronaut_clip(frames: int = 16, size: int = 224, step: int = 2):
    """A real RGB clip: skimage's astronaut (512 px) seen through a 448-px window panned ``step`` px per frame,
    resized to ``size`` and ImageNet-normalised as the datasets deliver clips -> [1, 3, frames, size, size]."""
    import torch
    import torch.nn.functional as F
    from skimage.data import astronaut
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    image = torch.from_numpy(astronaut()).permute(2, 0, 1).float()[None] / 255  # [1, 3, 512, 512]
    if 8 + step * (frames - 1) + 448 > 512:
        raise ValueError(f"{frames} frames {step} px apart leave the image")
    views = [F.interpolate(image[..., 16:464, 8 + step * t:456 + step * t], size=(size, size), mode="bilinear",
                           antialias=True, align_corners=False) for t in range(frames)]
    clip = torch.stack(views, dim=2)  # [1, 3, T, size, size] in [0, 1]
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1, 1)
    return (clip - mean) / std


def run_env() -> dict:
    """The environment of a tool run as a subprocess (the package is installed: no path set-up)."""
    return dict(os.environ)


@pytest.fixture(scope="session")
def face_data(tmp_path_factory):
    """Tiny DFDC (3 parts x 2 originals x 2 fakes) and FF++ (4 split pairs, 4 methods) layouts of real-face
    videos, extracted by tools/extract_faces.py (8 frames per video, 48 px crops)."""
    from types import SimpleNamespace

    from deepfake_ssat.commands.extract_faces import main as extract_main
    from deepfake_ssat.synthetic.layouts import write_dfdc, write_ffpp

    root = tmp_path_factory.mktemp("face_data")
    write_dfdc(root / "dfdc", num_parts=3, originals_per_part=2, fakes_per_original=2)
    write_ffpp(root / "ffpp")
    for name in ("dfdc", "ffpp"):
        assert extract_main([str(root / name), "--out", str(root / f"{name}_faces"), "--frames", "8",
                             "--size", "48", "--min-face", "20", "--device", "cpu", "--no-progress"]) == 0
    return SimpleNamespace(root=root, dfdc=root / "dfdc_faces", ffpp=root / "ffpp_faces",
                           splits=root / "ffpp" / "splits")
