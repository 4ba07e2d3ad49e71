"""``dfssat-digits-study`` / ``tools/digits_study.py``: ViT scratch vs ViT + SSAT on the bundled digits, same
epochs, several seeds: mean ± std of test top-1 (:func:`deepfake_ssat.study.runs.digits_study`)."""
from __future__ import annotations

import json
import shlex
import sys

from ..config import ConfigError
from ._cli import CommandParser, fail, rerun_command
from ..study import DIGITS_VARIANTS, digits_study, format_study


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(command=__name__, description="ViT scratch vs ViT + SSAT on the bundled "
                                     "digits, same epochs, several seeds: mean ± std of test top-1.")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of every run (default 20)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values (default 0,1,2)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                        help="an extra SSAT variant: name then overrides of the digits_vit_tiny_ssat config, "
                             "e.g. --variant lam0.3 ssat.lam=0.3 (repeatable)")
    parser.add_argument("--out", default="runs/digits_study", help="default runs/digits_study")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    from ..data.workers import tune_malloc
    tune_malloc()
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    except ValueError:
        return fail("--seeds takes comma-separated integers")
    variants = {}
    for name, *extra in args.variant:
        if name in DIGITS_VARIANTS:
            return fail(f"--variant {name}: the name is taken; pick another")
        variants[name] = (DIGITS_VARIANTS["ssat"][0], extra)
    command = shlex.join(rerun_command(__name__, argv))
    try:
        result = digits_study(args.out, args.epochs, seeds, args.opts, variants, command)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return fail(e)
    print(json.dumps(result, indent=2) if args.json else format_study(result))
    print(f"runs and study.json in {args.out}", file=sys.stderr)
    return 0

