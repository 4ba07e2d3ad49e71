#!/usr/bin/env python
"""Train from a config: ``python tools/train.py --config NAME|PATH [--opts k=v ...] [--out DIR]``
(NAME: a packaged config, e.g. ``dfdc_videomae_095`` or ``video/tiny/dfdc_videomae_095``)."""
from deepfake_ssat.commands import train

if __name__ == "__main__":
    train()
