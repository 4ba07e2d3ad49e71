#!/usr/bin/env python
"""Digits fidelity study: ``python tools/digits_study.py [--epochs 20] [--seeds 0,1,2]
[--variant NAME k=v ...] [--out runs/digits_study]`` (ViT scratch vs ViT + SSAT, mean ± std)."""
from deepfake_ssat.commands import digits_study

if __name__ == "__main__":
    digits_study()
