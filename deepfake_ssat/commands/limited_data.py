"""``dfssat-limited-data`` / ``tools/limited_data.py``: scratch vs SSAT for one recipe over training-set fractions
and seeds, same epochs; ``study.json``, a markdown table and a plot (:func:`deepfake_ssat.study.limited_data_study`).
"""
from __future__ import annotations

import json
import shlex
import sys

from ..config import ConfigError
from ._cli import CommandParser, fail, interrupted, rerun_command
from ..study import VARIANTS, format_study, limited_data_study


def build_parser() -> CommandParser:
    parser = CommandParser(command=__name__, description="Scratch vs SSAT for one recipe (a pair of configs "
                           "<recipe>_scratch / <recipe>_ssat) over training-set fractions and seeds, same epochs: "
                           "mean ± std of test top-1 per cell and SSAT - scratch, as study.json, study.md and "
                           "study.png. Rerun the same command to continue a stopped study.")
    parser.add_argument("--recipe", default="digits_vit_tiny",
                        help="e.g. cifar10_vit_tiny_cpu (CPU), cifar10_vit_tiny (the paper's, for GPUs); default "
                             "digits_vit_tiny (scikit-learn's bundled digits)")
    parser.add_argument("--fractions", default="1", help="comma-separated fractions of the training set (default 1)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated train.seed values (default 0,1,2)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of every run (default: the recipe's)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every run, e.g. data.root=../shared/data/cifar10_jpeg")
    parser.add_argument("--variant", nargs="+", action="append", default=[], metavar=("NAME", "KEY=VALUE"),
                        help="an extra SSAT variant: name then overrides of the recipe's SSAT config, "
                             "e.g. --variant lam0.3 ssat.lam=0.3 (repeatable)")
    parser.add_argument("--out", default=None, help="default runs/limited_data/<recipe>")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _numbers(flag: str, text: str, kind: type) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{flag}: comma-separated {kind.__name__}s, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag}: give at least one value")
    return values


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..data.workers import tune_malloc
    tune_malloc()
    out = args.out or f"runs/limited_data/{args.recipe}"
    command = rerun_command(__name__, argv)
    try:
        fractions = _numbers("--fractions", args.fractions, float)
        seeds = _numbers("--seeds", args.seeds, int)
        variants = {}
        for name, *extra in args.variant:
            if name in VARIANTS or name in variants:
                return fail(f"--variant {name}: the name is taken; pick another")
            variants[name] = extra
        result = limited_data_study(args.recipe, out, fractions, seeds, args.epochs, args.opts, variants,
                                    shlex.join(command))
    except KeyboardInterrupt:
        return interrupted(f"finished runs and the last epoch of the current one in {out}", command)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return fail(e)
    print(json.dumps(result, indent=2) if args.json else format_study(result))
    print(f"runs, study.json, study.md and study.png in {out}", file=sys.stderr)
    return 0
