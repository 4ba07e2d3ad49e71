"""``dfssat-sweep-lambda`` / ``tools/sweep_lambda.py``: train one config at several ``ssat.lam`` values (paper
Fig. 3) and tabulate accuracy per lambda (:func:`deepfake_ssat.study.runs.sweep_lambda`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..config import ConfigError
from ._cli import CommandParser, fail
from ..study import format_sweep, sweep_lambda


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(command=__name__, description="Train one config at several ssat.lam "
                                     "values (paper Fig. 3) and tabulate accuracy per lambda.")
    parser.add_argument("--config", required=True, help="a YAML file or a packaged config name (an SSAT config)")
    parser.add_argument("--lams", default="0.1,0.3,0.5,0.7,0.9,1.0",
                        help="comma-separated lambdas (default 0.1,0.3,0.5,0.7,0.9,1.0; 1.0 = scratch)")
    parser.add_argument("--seeds", default="0", help="comma-separated train.seed values (default 0)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--out", help="default runs/sweep_lambda/<config-name>")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    from ..data.workers import tune_malloc
    tune_malloc()
    try:
        lams = [float(v) for v in args.lams.split(",") if v.strip()]
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        return fail("--lams takes comma-separated numbers and --seeds comma-separated integers")
    out = Path(args.out) if args.out else Path("runs/sweep_lambda") / Path(args.config).stem
    try:
        result = sweep_lambda(args.config, lams, out, args.opts, seeds)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return fail(e)
    print(json.dumps(result, indent=2) if args.json else format_sweep(result))
    print(f"runs and sweep.json in {out}", file=sys.stderr)
    return 0

