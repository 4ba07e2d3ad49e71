#!/usr/bin/env python
"""The video demo behind ``make demo``: ``python tools/demo.py [--out runs/demo] [--quick]``."""
from deepfake_ssat.commands import demo

if __name__ == "__main__":
    demo()
