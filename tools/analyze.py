#!/usr/bin/env python
"""Analyse checkpoints: ``python tools/analyze.py --checkpoint A [B ...] [--what attention,hessian,...] [--out DIR]``.

Writes ``DIR/<what>.png`` and ``DIR/<what>.json`` per analysis; see deepfake_ssat/analysis/cli.py.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.analysis.cli import analyze_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(analyze_main())
