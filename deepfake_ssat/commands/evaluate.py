"""``dfssat-evaluate`` / ``tools/evaluate.py``: one checkpoint on the test sets the field reports (FF++, Celeb-DF,
the DFDC public test set, your own video lists), video level, merged into one cross-dataset table
(:mod:`deepfake_ssat.eval.crossdata`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..faces.inputs import FFPP_COMPRESSIONS
from ._cli import CommandParser
from .eval_ff import out_problem, run_name

DATASET_CHOICES = ("ffpp", "celebdf", "dfdc-test", "list")  # = eval.crossdata.DATASETS (not imported: light --help)
DATASET_FLAGS = {"compression": "ffpp", "splits_dir": "ffpp", "test_list": "celebdf", "split": "list"}


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        command=__name__,
        description="Evaluate a checkpoint (video level) on extracted test sets: FF++ (official test split, per "
                    "manipulation and all), Celeb-DF v2 (official test list), the DFDC public test set, your own "
                    "video lists. Writes results.{md,csv,json} (merged across runs: one cross-dataset table) and "
                    "per-model predictions / ROC curves into --out.")
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="training checkpoint (best.pt) or exported detector (detector.safetensors / .json)")
    p.add_argument("--dataset", choices=DATASET_CHOICES, action="append", required=True,
                   help="test set(s) to score (repeatable): ffpp, celebdf, dfdc-test, list")
    p.add_argument("--data-root", type=Path, action="append", required=True, metavar="DIR",
                   help="extraction root (dfssat-extract-faces --out): once for every --dataset, or once per "
                        "--dataset in the same order")
    p.add_argument("--compression", choices=FFPP_COMPRESSIONS, help="FF++ level (default c23)")
    p.add_argument("--splits-dir", type=Path, help="FF++: folder of the official train/val/test.json "
                                                   "(default: <data-root>/splits)")
    p.add_argument("--test-list", type=Path, help="Celeb-DF: its List_of_testing_videos.txt "
                                                  "(default: <data-root>/List_of_testing_videos.txt)")
    p.add_argument("--split", choices=("all", "train", "val", "test"),
                   help="list: score every extracted video (all, the default) or one split as training draws it")
    p.add_argument("--strategy", choices=("mean", "confident"), default="mean",
                   help="clip -> video aggregation (default mean; confident = the DFDC winner's rule)")
    p.add_argument("--name", help="row name in the table (default: the checkpoint's folder name)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N] (default auto)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per batch (default 16)")
    p.add_argument("--num-workers", type=int, default=0, help="data loader workers (default 0)")
    p.add_argument("--out", type=Path, required=True, help="results folder (the table merges across runs)")
    return p


def _flag_problem(args: argparse.Namespace) -> str | None:
    """Why the flags cannot work together (checked before any work), or None."""
    if len(set(args.dataset)) != len(args.dataset):
        return "--dataset: each dataset once per run (run again with another --out or --name for a second root)"
    for flag, dataset in DATASET_FLAGS.items():
        if getattr(args, flag) is not None and dataset not in args.dataset:
            return f"--{flag.replace('_', '-')} is for --dataset {dataset}, which this run does not score"
    if args.batch_size < 1 or args.num_workers < 0:
        return f"--batch-size must be >= 1 and --num-workers >= 0, got {args.batch_size}, {args.num_workers}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 with the table written; 2 on bad input or a NaN / inf model output (one ``error:`` line), 130 on
    Ctrl-C. The table is written as each dataset finishes, so an interrupted run keeps the finished ones."""
    args = build_parser().parse_args(argv)

    from ..config import ConfigError
    from ..data.workers import tune_malloc
    from ..runtime import resolve_device
    from ..eval.crossdata import celebdf_test_list, eval_sets, evaluate, load_eval_model, pair_roots
    from ..eval.report import CROSSDATA_FORMAT, read_records, update_table
    from ._cli import fail, interrupted, rerun_command

    tune_malloc()
    done: list[dict] = []  # records of the finished datasets
    try:
        problem = out_problem(args.out) or _flag_problem(args)
        if problem:
            raise ConfigError(problem)
        read_records(args.out, CROSSDATA_FORMAT)  # a results.json that cannot be merged into is refused before any work
        pairs = pair_roots(args.dataset, args.data_root)
        if not args.checkpoint.is_file():
            raise FileNotFoundError(f"--checkpoint: {args.checkpoint} not found")
        for _, root in pairs:
            if not root.is_dir():
                raise FileNotFoundError(f"--data-root: {root} is not a folder; point it at an extraction root "
                                        f"(the --out of dfssat-extract-faces)")
        for dataset, root in pairs:
            if dataset == "celebdf":
                celebdf_test_list(root, args.test_list)
        device = resolve_device(args.device)
        model = load_eval_model(args.checkpoint, args.name or run_name(args.checkpoint), device)
        plans = [eval_sets(model, dataset, root, compression=args.compression or "c23",
                           splits_dir=args.splits_dir, test_list=args.test_list, split=args.split or "all")
                 for dataset, root in pairs]  # every dataset is found before any is scored
        for plan in plans:
            done.extend(evaluate(model, plan, args.out, device, args.batch_size, args.num_workers, args.strategy))
            paths = update_table(args.out, done, CROSSDATA_FORMAT)
    except KeyboardInterrupt:
        return interrupted(_kept(done, args.out), rerun_command(__name__, argv))
    except (ValueError, OSError) as e:  # ConfigError, CheckpointError, NonFiniteScores are ValueErrors
        return fail(e)
    print(paths["md"].read_text())
    written: dict[str, str | list[str]] = {k: str(v) for k, v in paths.items()}
    for kind in ("predictions", "roc"):  # one file per dataset, shared by its test sets
        written[kind] = list(dict.fromkeys(str(args.out / r[kind]) for r in done if r[kind]))
    print(json.dumps(written))
    return 0


def _kept(done: list[dict], out: Path) -> str:
    """What an interrupted evaluate keeps: the results of the datasets that finished."""
    if not done:
        return "no dataset finished; no results written"
    sets = ", ".join(r["test_set"] for r in done)
    return (f"results of the finished test sets ({sets}) kept in {out / 'results.md'} (.csv, .json); a rerun scores "
            f"every requested dataset again")
