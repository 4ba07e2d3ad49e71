#!/usr/bin/env python
"""Digits demo: ``python tools/demo_digits.py [--epochs N] [--out DIR]`` (what ``make demo`` runs)."""
from deepfake_ssat.commands import demo_digits

if __name__ == "__main__":
    demo_digits()
