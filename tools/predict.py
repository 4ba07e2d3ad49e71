#!/usr/bin/env python
"""Fake probability per video: ``python tools/predict.py VIDEO_OR_DIR [...] --checkpoint CKPT [--out FILE]``."""
from deepfake_ssat.commands import predict

if __name__ == "__main__":
    predict()
