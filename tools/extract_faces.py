#!/usr/bin/env python
"""Face crops + manifests: ``python tools/extract_faces.py INPUT [INPUT ...] --out DIR [--frames 32]
[--workers N] [--shard I --num-shards N] [--device auto|cpu|cuda]`` (``--help`` for all options)."""
from deepfake_ssat.commands import extract_faces

if __name__ == "__main__":
    extract_faces()
