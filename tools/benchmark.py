#!/usr/bin/env python
"""Benchmarks (one JSON object each): ``python tools/benchmark.py {model,faces,loader,eval} [--json]``."""
from deepfake_ssat.commands import benchmark

if __name__ == "__main__":
    benchmark()
