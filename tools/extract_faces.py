#!/usr/bin/env python
"""Face crops + manifests: ``python tools/extract_faces.py INPUT [INPUT ...] --out DIR [--frames 32]
[--workers N] [--shard I --num-shards N] [--device cpu|cuda]`` (``--help`` for all options)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.faces.cli import extract_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(extract_main())
