#!/usr/bin/env python
"""Train from a config: ``python tools/train.py --config configs/<name>.yaml [--opts k=v ...] [--out DIR]``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.cli import train_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(train_main())
