import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepfake_ssat.config import load_config  # noqa: E402

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


def run_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env
