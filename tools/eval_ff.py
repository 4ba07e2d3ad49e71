#!/usr/bin/env python
"""FF++ evaluation (Table 8): ``python tools/eval_ff.py --leave-out NeuralTextures --checkpoint CKPT --data-root
FFPP_CROPS --out DIR`` (cross-manipulation) and/or ``--zero-shot``. See ``--help``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.eval.cli import eval_ff_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(eval_ff_main())
