"""Command-line entry points; ``tools/*.py`` are thin wrappers over these ``main`` functions."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .config import ConfigError, config_from_dict, load_config


def train_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="train.py", description="Train an SSAT / scratch / MAE model from a YAML config.")
    parser.add_argument("--config", help="configs/<name>.yaml (not needed with --resume)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides, e.g. train.epochs=5 ssat.mask_ratio=0.95 decoder=null")
    parser.add_argument("--out", help="run directory (default runs/<config-name>/<timestamp>)")
    parser.add_argument("--resume", help="checkpoint (or run directory holding last.pt) to continue from")
    parser.add_argument("--max-steps", type=int, help="stop after this many updates (checkpointed; resumable)")
    args = parser.parse_args(argv)

    from .engine import TrainingDiverged, fit, load_checkpoint
    from .engine.runtime import tune_malloc
    tune_malloc()  # CPU steps otherwise re-fault freed activation memory every step
    try:
        resume, ckpt = None, None
        if args.resume:
            resume = Path(args.resume)
            if resume.is_dir():
                resume = resume / "last.pt"
            ckpt = load_checkpoint(resume)  # read once: the config comes from it, fit() resumes from it
            if not {"config", "model", "train_state"} <= ckpt.keys():
                raise ValueError(f"{resume}: not a deepfake_ssat training checkpoint; --resume needs a last.pt "
                                 f"written by tools/train.py")
        if args.config:
            cfg = load_config(args.config, args.opts)
        elif resume is not None:
            cfg = config_from_dict(ckpt["config"], source=str(resume), overrides=args.opts)
        else:
            parser.error("--config is required (or --resume a run)")
        if args.out:
            out = Path(args.out)
        elif resume is not None:
            out = resume.parent
        else:
            out = Path("runs") / Path(args.config).stem / time.strftime("%Y%m%d-%H%M%S")
        summary = fit(cfg, out, resume=ckpt, max_steps=args.max_steps)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        # an error raised in a DataLoader worker arrives wrapped in the worker's traceback: keep its last line
        print(f"error: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}", file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one summary line, from rank 0
        print(json.dumps(summary))
    return 0
