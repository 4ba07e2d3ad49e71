#!/usr/bin/env python
"""The video demo behind ``make demo``: ``python tools/demo.py [--out runs/demo] [--quick]``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.demo_video import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
