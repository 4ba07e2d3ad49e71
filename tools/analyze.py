#!/usr/bin/env python
"""Analyse checkpoints: ``python tools/analyze.py --checkpoint A [B ...] [--what attention,hessian,...] [--out DIR]``.

Writes ``DIR/<what>.png`` and ``DIR/<what>.json`` per analysis; see deepfake_ssat/commands/analyze.py.
"""
from deepfake_ssat.commands import analyze

if __name__ == "__main__":
    analyze()
