#!/usr/bin/env python
"""FF++ evaluation (Table 8): ``python tools/eval_ff.py --leave-out NeuralTextures --checkpoint CKPT --data-root
FFPP_CROPS --out DIR`` (cross-manipulation) and/or ``--zero-shot``. See ``--help``."""
from deepfake_ssat.commands import eval_ff

if __name__ == "__main__":
    eval_ff()
