"""The digits demo: the same ViT trained from scratch and with SSAT, same epochs, one table."""
from __future__ import annotations

import time
from pathlib import Path

from ..config import find_config, load_config, packaged_configs
from ..engine import fit
from ..io import atomic_write_json

DIGITS_RUNS = {"scratch": "digits_vit_tiny_scratch.yaml", "SSAT": "digits_vit_tiny_ssat.yaml"}


def run_digits_demo(out_root: str | Path, epochs: int | None = None, seed: int = 0) -> list[dict]:
    """Train each digits config into ``out_root/<name>``; return one result row per run."""
    out_root = Path(out_root)
    rows = []
    for mode, name in DIGITS_RUNS.items():
        opts = [f"train.seed={seed}"] + ([f"train.epochs={epochs}"] if epochs else [])
        cfg = load_config(name, opts)
        summary = fit(cfg, out_root / Path(name).stem)
        config = find_config(name).relative_to(packaged_configs().parent)  # configs/image/digits/<name>
        rows.append({"mode": mode, "config": str(config), "epochs": cfg.train.epochs, **summary})
    atomic_write_json(out_root / "results.json", rows)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| run | epochs | best val top-1 (%) | test top-1 (%) | train time (s) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['mode']} (`{r['config']}`) | {r['epochs']} | {r['best_val_acc1']:.2f} | "
                     f"{r['test_acc1']:.2f} | {r['train_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ._cli import CommandParser

    parser = CommandParser(command=__name__, description="Digits demo: ViT from scratch vs ViT + SSAT (CPU).")
    parser.add_argument("--out", default=None, help="default runs/demo_digits/<timestamp>")
    parser.add_argument("--epochs", type=int, default=None, help="override both configs' epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from ..data.workers import tune_malloc
    tune_malloc()
    out = Path(args.out) if args.out else Path("runs/demo_digits") / time.strftime("%Y%m%d-%H%M%S")
    rows = run_digits_demo(out, args.epochs, args.seed)
    print("\n" + format_table(rows))
    print(f"\nruns, checkpoints and results.json in {out}")
    return 0
