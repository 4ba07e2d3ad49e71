#!/usr/bin/env python
"""Lambda sweep (paper Fig. 3): ``python tools/sweep_lambda.py --config configs/<name>_ssat.yaml
[--lams 0.1,0.3,0.5,0.7,0.9,1.0] [--seeds 0] [--opts k=v ...] [--out DIR]``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.study import sweep_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(sweep_main())
