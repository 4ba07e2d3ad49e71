#!/usr/bin/env python
"""Fake probability per video: ``python tools/predict.py VIDEO_OR_DIR [...] --checkpoint CKPT [--out FILE]``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.inference import predict_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(predict_main())
