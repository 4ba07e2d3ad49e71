"""``dfssat-cost-report`` / ``tools/cost_report.py``: GFLOPs per image, training time and estimated kg CO2-eq of
training runs, every factor printed (:mod:`deepfake_ssat.study.cost`)."""
from __future__ import annotations

import json

from ..study.cost import CarbonFactors, cost_report, format_cost
from ._cli import CommandParser, fail


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        command=__name__, description="GFLOPs per image, training time and estimated kg CO2-eq of runs.")
    parser.add_argument("runs", nargs="+", metavar="RUN[+RUN]",
                        help="run directories of dfssat-train; join SSL and fine-tuning runs with +")
    defaults = CarbonFactors()
    parser.add_argument("--device-power-w", type=float, default=defaults.device_power_w,
                        help=f"watts per device (default {defaults.device_power_w:g}, an RTX A5000)")
    parser.add_argument("--pue", type=float, default=defaults.pue,
                        help=f"data-centre power usage effectiveness (default {defaults.pue:g})")
    parser.add_argument("--grid-kg-per-kwh", type=float, default=defaults.grid_kg_per_kwh,
                        help=f"grid carbon intensity (default {defaults.grid_kg_per_kwh:g} kg CO2-eq/kWh)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    factors = CarbonFactors(args.device_power_w, args.pue, args.grid_kg_per_kwh)
    try:
        report = cost_report(args.runs, factors)
    except (FileNotFoundError, ValueError) as e:
        return fail(e)
    print(json.dumps(report, indent=2) if args.json else format_cost(report))
    return 0

