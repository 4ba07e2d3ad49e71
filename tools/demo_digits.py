#!/usr/bin/env python
"""Digits demo: ``python tools/demo_digits.py [--epochs N] [--out DIR]`` (what ``make demo`` runs)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.demo import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
