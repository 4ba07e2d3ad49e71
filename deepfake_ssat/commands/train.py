"""``dfssat-train`` / ``tools/train.py``: train an SSAT / scratch / MAE model from a config, or resume a run.

A thin layer over :func:`deepfake_ssat.engine.fit`: it reads the config (or the checkpoint's), checks a
``--config`` against a resumed run, and turns errors and Ctrl-C into one line."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from ..config import Config, ConfigError, config_from_dict, flat_config, load_config
from ._cli import CommandParser, fail, interrupted, invoked_as


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(
        command=__name__, description="Train an SSAT / scratch / MAE model from a YAML config.")
    parser.add_argument("--config", help="a YAML file or a packaged config name, e.g. dfdc_videomae_095 "
                                         "(not needed with --resume)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides, e.g. train.epochs=5 ssat.mask_ratio=0.95 decoder=null")
    parser.add_argument("--out", help="run directory (default runs/<config-name>/<timestamp>)")
    parser.add_argument("--resume", help="checkpoint (or run directory holding last.pt) to continue from")
    parser.add_argument("--max-steps", type=int, help="stop after this many updates (checkpointed; resumable)")
    args = parser.parse_args(argv)

    from ..engine import TrainingDiverged, fit, load_checkpoint
    from ..data.workers import tune_malloc
    from ..engine.trainer import TrainingInterrupted, carry_best
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
                                 f"written by dfssat-train")
        if resume is not None:
            cfg = config_from_dict(ckpt["config"], source=str(resume), overrides=args.opts)
            if args.config:
                _check_same_config(cfg, load_config(args.config, args.opts), args.config, resume)
        elif args.config:
            cfg = load_config(args.config, args.opts)
        else:
            parser.error("--config is required (or --resume a run)")
        if args.out:
            out = Path(args.out)
        elif resume is not None:
            out = resume.parent
        else:
            out = Path("runs") / Path(args.config).stem / time.strftime("%Y%m%d-%H%M%S")
        if resume is not None:
            carry_best(resume, out)
        summary = fit(cfg, out, resume=ckpt, max_steps=args.max_steps)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return fail(e)
    except TrainingDiverged as e:
        return fail(e, code=3)
    except TrainingInterrupted as e:
        kept = (f"{e.out_dir / 'last.pt'} holds update {e.step} of {e.total}" if e.step is not None
                else f"no checkpoint was written yet in {e.out_dir}")
        return interrupted(kept, [*invoked_as(__name__), "--resume", str(e.out_dir)] if e.step is not None
                           else None)
    except KeyboardInterrupt:
        return interrupted("nothing was trained yet")
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one summary line, from rank 0
        print(json.dumps(summary))
    return 0


def _check_same_config(resumed: Config, given: Config, config_path: str, resume: Path) -> None:
    """``--resume`` takes the run's config from its checkpoint; a ``--config`` that says otherwise conflicts."""
    theirs, ours = flat_config(resumed), flat_config(given)
    for key in sorted(theirs.keys() | ours.keys()):
        if theirs.get(key) != ours.get(key):
            raise ConfigError(f"--config {config_path} conflicts with --resume {resume}: {key} is {ours.get(key)!r} "
                              f"there but {theirs.get(key)!r} in the checkpoint; drop --config (the run's config "
                              f"is in its checkpoint) and change settings with --opts")

