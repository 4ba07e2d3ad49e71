"""``dfssat-eval-ff`` / ``tools/eval_ff.py``: the FF++ cross-manipulation and zero-shot protocols, written as
the paper's Table 8 (:mod:`deepfake_ssat.eval.ffpp`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..faces.inputs import FFPP_COMPRESSIONS, FFPP_PAPER_METHODS
from ._cli import CommandParser

METHOD_CHOICES = (*FFPP_PAPER_METHODS, "all")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        command=__name__,
        description="FF++ evaluation (Table 8): cross-manipulation fine-tuning with one manipulation left out, "
                    "and/or zero-shot transfer of a (DFDC-trained) checkpoint. Writes results.{md,csv,json}, "
                    "ROC curves and per-video predictions into --out.")
    p.add_argument("--leave-out", choices=METHOD_CHOICES, action="append", metavar="METHOD",
                   help=f"cross-manipulation fold: {', '.join(FFPP_PAPER_METHODS)} or all (repeatable)")
    p.add_argument("--zero-shot", action="store_true",
                   help="score --checkpoint on every FF++ manipulation, no training")
    p.add_argument("--checkpoint", type=Path, help="trained checkpoint (best.pt / last.pt of dfssat-train)")
    p.add_argument("--scratch", action="store_true",
                   help="cross-manipulation from scratch: no pre-training, classification only (the Scratch row)")
    p.add_argument("--data-root", type=Path, required=True, help="dfssat-extract-faces output of the FF++ videos")
    p.add_argument("--splits-dir", type=Path, help="folder of the official train/val/test.json "
                                                   "(default: <data-root>/splits)")
    p.add_argument("--compression", choices=FFPP_COMPRESSIONS, default=None, help="FF++ level (default: config's)")
    p.add_argument("--config", type=Path,
                   help="fine-tuning config (a file or packaged name). Default: the one of the checkpoint's Table 8 "
                        "row, ffpp_videomae_{095,075,ssl_095_ft,ssl_075_ft,scratch} (its tiny/ variant for a "
                        "tiny checkpoint); ffpp_videomae_scratch with --scratch. A config whose lam / mask ratio "
                        "/ decoder / row differ from the checkpoint's is refused")
    p.add_argument("--allow-recipe-mismatch", action="store_true",
                   help="fine-tune with --config's recipe even where it differs from the checkpoint's (e.g. a "
                        "0.75 SSAT checkpoint at 0.95, or an SSL checkpoint with SSAT): the fold then no longer "
                        "measures the checkpoint's row of Table 8; each fold's recipe.json records it")
    p.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as in dfssat-train")
    p.add_argument("--name", help="row name in the table (default: the checkpoint's run folder, or Scratch)")
    p.add_argument("--strategy", choices=("mean", "confident"), default="mean",
                   help="clip -> video aggregation (default mean; confident = the DFDC winner's rule)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] for scoring (training: config's)")
    p.add_argument("--out", type=Path, required=True, help="results folder (tables merge across runs)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the table written; 2 on bad input (one ``error:`` line), 3 when training diverged,
    130 on Ctrl-C. Results are written into ``--out`` as each protocol / fold finishes, so an interrupted
    or failed run keeps what finished."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.leave_out and not args.zero_shot:
        parser.error("give --leave-out METHOD|all and/or --zero-shot")
    if args.zero_shot and args.checkpoint is None:
        parser.error("--zero-shot needs --checkpoint")

    from ..config import ConfigError, find_config
    from ..engine.pretrained import PretrainedError
    from ..data.workers import tune_malloc
    from ..runtime import resolve_device
    from ..engine.trainer import TrainingDiverged
    from ._cli import fail, interrupted, rerun_command
    from ..eval.ffpp import cross_manipulation, zero_shot
    from ..eval.report import TABLE8_FORMAT, update_table

    tune_malloc()
    name = args.name or ("Scratch" if args.scratch else run_name(args.checkpoint))
    opts = list(args.opts) + ([f"data.faces.compression={args.compression}"] if args.compression else [])
    done: list[dict] = []  # results records of the finished protocols / folds

    def keep(records: list[dict]) -> None:
        done.extend(records)
        update_table(args.out, done, TABLE8_FORMAT)

    try:
        problem = out_problem(args.out)
        if problem:
            raise ValueError(problem)
        if args.checkpoint is not None and not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint: {args.checkpoint} not found")
        if not args.data_root.is_dir():
            raise FileNotFoundError(f"--data-root: {args.data_root} is not a folder; point it at the "
                                    f"dfssat-extract-faces output of the FF++ videos")
        device = resolve_device(args.device)
        if args.zero_shot:
            keep(zero_shot(args.checkpoint, args.data_root, args.out, name, args.splits_dir,
                           args.compression or "c23", device, strategy=args.strategy))
        if args.leave_out:
            folds = None if "all" in args.leave_out else list(dict.fromkeys(args.leave_out))
            config = find_config(args.config) if args.config else None  # None: the checkpoint's row picks it
            cross_manipulation(config, args.data_root, args.out, name, folds, args.checkpoint, args.scratch,
                               args.splits_dir, opts, device, args.strategy, on_fold=lambda r: keep([r]),
                               allow_recipe_mismatch=args.allow_recipe_mismatch)
        paths = update_table(args.out, done, TABLE8_FORMAT)
    except KeyboardInterrupt:
        return interrupted(_kept(done, args.out), rerun_command(__name__, argv))
    except (ConfigError, FileNotFoundError, PretrainedError, ValueError) as e:
        return fail(e)
    except TrainingDiverged as e:
        return fail(e, 3)
    print(paths["md"].read_text())
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def out_problem(out: Path) -> str | None:
    """Why ``--out`` cannot be the results folder (checked before any work), or None."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: is an existing file; give a folder"
    parent = out.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"--out {out}: {parent} is a file, not a folder"
    return None


def _kept(done: list[dict], out: Path) -> str:
    """What an interrupted eval_ff keeps: the results of the protocols / folds that finished."""
    if not done:
        return "no protocol or fold finished; no results written"
    parts = (["zero-shot"] if any(r["protocol"] == "zero-shot" for r in done) else []) + [
        f"cross {r['method']}" for r in done if r["protocol"] == "cross"]
    return (f"results of the finished {', '.join(parts)} kept in {out / 'results.md'} (.csv, .json); "
            f"a rerun evaluates every requested protocol and fold again")


def run_name(checkpoint: Path | None) -> str:
    return checkpoint.resolve().parent.name if checkpoint is not None else "model"
