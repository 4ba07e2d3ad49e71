#!/usr/bin/env python
"""Fake probability per video: ``python tools/predict.py VIDEO_OR_DIR [...] --checkpoint CKPT [--out FILE]``."""
from deepfake_ssat.commands.predict import main
from deepfake_ssat.runcli import run_cli

if __name__ == "__main__":
    run_cli(main)
