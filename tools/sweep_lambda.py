#!/usr/bin/env python
"""Lambda sweep (paper Fig. 3): ``python tools/sweep_lambda.py --config <dataset>_<model>_ssat
[--lams 0.1,0.3,0.5,0.7,0.9,1.0] [--seeds 0] [--opts k=v ...] [--out DIR]``."""
from deepfake_ssat.commands import sweep_lambda

if __name__ == "__main__":
    sweep_lambda()
