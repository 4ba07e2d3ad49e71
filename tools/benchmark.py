#!/usr/bin/env python
"""Benchmarks (one JSON object each): ``python tools/benchmark.py {model,faces,loader,eval} [--json]``."""
from deepfake_ssat.commands.benchmark import main
from deepfake_ssat.runcli import run_cli

if __name__ == "__main__":
    run_cli(main)
