#!/usr/bin/env python
"""Training cost (paper Table 3): ``python tools/cost_report.py RUN [SSL_RUN+FT_RUN ...]
[--device-power-w 230] [--pue 1.0] [--grid-kg-per-kwh 0.432] [--json]``: GFLOPs per image,
training time and estimated kg CO2-eq, every factor printed."""
from deepfake_ssat.commands import cost_report

if __name__ == "__main__":
    cost_report()
