#!/usr/bin/env python
"""Digits fidelity study: ``python tools/digits_study.py [--epochs 20] [--seeds 0,1,2]
[--variant NAME k=v ...] [--out runs/digits_study]`` (ViT scratch vs ViT + SSAT, mean ± std)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.study import study_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(study_main())
