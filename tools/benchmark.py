#!/usr/bin/env python
"""Benchmarks: ``python tools/benchmark.py model --json [--models small,tiny] [--frames 16] ...``.

Sub-commands: ``model`` (SSAT vs scratch train-step cost, P1/P2). Prints one JSON object to stdout.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _csv(kind):
    def parse(text: str):
        try:
            items = [kind(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
        if not items:
            raise argparse.ArgumentTypeError("expected at least one value")
        return items
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="benchmark.py", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{model}")

    p = sub.add_parser("model", help="SSAT vs scratch train step: time ratio vs FLOP ratio (P1), "
                                     "fraction of fp32 matmul peak (P2)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a short text summary)")
    p.add_argument("--models", type=_csv(str), default=["small", "tiny"],
                   help="comma-separated encoders: tiny, small, base or registered names (default small,tiny)")
    p.add_argument("--frames", type=int, default=16, help="clip length (default 16)")
    p.add_argument("--img-size", type=int, default=112, help="frame size in pixels (default 112)")
    p.add_argument("--batch", type=int, default=2, help="clips per step (default 2)")
    p.add_argument("--ratios", type=_csv(float), default=[0.75, 0.95], help="MAE mask ratios (default 0.75,0.95)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per model (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per model first (default 2)")
    p.add_argument("--matmul-size", type=int, default=2048, help="square fp32 matmul for the peak (default 2048)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from deepfake_ssat.benchmark import format_summary, run_model_benchmark

    if args.threads:
        torch.set_num_threads(args.threads)
    command = shlex.join(["python", "tools/benchmark.py"] + (sys.argv[1:] if argv is None else list(argv)))
    if args.command == "model":
        try:
            result = run_model_benchmark(
                models=args.models, frames=args.frames, img_size=args.img_size, batch=args.batch,
                ratios=args.ratios, repeats=args.repeats, warmup=args.warmup,
                matmul_size=args.matmul_size, command=command, seed=args.seed)
        except (KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
