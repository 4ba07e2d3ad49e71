#!/usr/bin/env python
"""Cross-dataset evaluation (video level): ``python tools/evaluate.py --checkpoint CKPT --dataset ffpp --dataset
celebdf --data-root FACES --out DIR``. See ``--help``."""
from deepfake_ssat.commands import evaluate

if __name__ == "__main__":
    evaluate()
