#!/usr/bin/env python
"""Training cost (paper Table 3): ``python tools/cost_report.py RUN [SSL_RUN+FT_RUN ...]
[--device-power-w 230] [--pue 1.0] [--grid-kg-per-kwh 0.432] [--json]``: GFLOPs per image,
training time and estimated kg CO2-eq, every factor printed."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepfake_ssat.engine.cost import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
