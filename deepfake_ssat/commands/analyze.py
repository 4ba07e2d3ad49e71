"""``dfssat-analyze`` / ``tools/analyze.py``: diagnostics, Grad-CAM, attention maps and reconstructions of
one or more checkpoints on the same fixed (seeded) samples; writes ``<out>/<what>.png`` + ``.json``.
The analyses themselves live in :mod:`deepfake_ssat.analysis`."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.probes import require_plain_vit
from ..analysis.runner import (ANALYSES, RUNNERS, Loaded, checkpoint_names, fixed_samples, load_for_analysis,
                               run_probes)
from ..config import ConfigError, load_config
from ..runtime import resolve_device
from ..io import atomic_write_json
from ._cli import CommandParser, fail


class _Parser(CommandParser):
    def error(self, message: str) -> None:  # main turns it into its one error line, as for every bad input
        raise ValueError(self.usage_line(message))


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _what(text: str) -> list[str]:
    asked = list(ANALYSES) if text == "all" else [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in asked if w not in ANALYSES]
    if unknown or not asked:
        raise argparse.ArgumentTypeError(f"unknown analysis {', '.join(unknown) or text!r}; "
                                         f"choose from {', '.join(ANALYSES)} or all")
    return asked


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(command=__name__, description="Diagnostics and visualisations of SSAT / scratch checkpoints.")
    p.add_argument("--checkpoint", nargs="+", required=True, type=Path, help="training checkpoints (.pt)")
    p.add_argument("--what", type=_what, default=list(ANALYSES),
                   help=f"comma-separated subset of {','.join(ANALYSES)} (default: all)")
    p.add_argument("--data", help="config YAML whose data section gives the samples (default: the first "
                                  "checkpoint's own config)")
    p.add_argument("--split", default="val", help="dataset split to draw samples from (default: val)")
    p.add_argument("--num-samples", type=int, default=32, help="fixed samples for every analysis (default 32)")
    p.add_argument("--batch-size", type=int, default=16, help="forward batch; also the Hessian's batches")
    p.add_argument("--seed", type=int, default=0, help="sample choice, masks and random probes")
    p.add_argument("--blocks", type=_int_list,
                   help="attention blocks, e.g. 0,3,-1 (default 0,5,-1: first, the paper's 6th, last; "
                        "depth//2 as the middle one below 6 blocks)")
    p.add_argument("--layer", type=int, default=-1, help="Grad-CAM: tokens entering this block (default -1)")
    p.add_argument("--hessian-loss", choices=("cls", "joint"), default="cls",
                   help="cls: cross-entropy; joint: SSAT loss with fixed masks (needs the decoder)")
    p.add_argument("--topk", type=int, default=3, help="Hessian: top eigenvalues by power iteration")
    p.add_argument("--power-iters", type=int, default=100, help="Hessian: power iterations per eigenvalue, at most")
    p.add_argument("--lanczos-steps", type=int, default=30, help="Hessian: Lanczos steps per SLQ probe")
    p.add_argument("--probes", type=int, default=3, help="Hessian: SLQ probe vectors")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--out", type=Path, help="output folder (default: <first checkpoint folder>/analysis)")
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        for flag in ("num_samples", "batch_size", "topk", "power_iters", "lanczos_steps", "probes"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag.replace('_', '-')}: must be >= 1")
        device = resolve_device(args.device)
        names = checkpoint_names(args.checkpoint)
        ckpts = [Loaded(n, *load_for_analysis(p, device)) for n, p in zip(names, args.checkpoint)]
        for ck, path in zip(ckpts, args.checkpoint):
            bad = next((k for k, v in ck.model.state_dict().items() if v.is_floating_point() and
                        not bool(v.isfinite().all())), None)
            if bad is not None:
                raise ValueError(f"{path}: weight {bad} holds NaN / inf; nothing to analyze (a diverged or corrupted "
                                 f"checkpoint: take best.pt or an earlier last.pt)")
        shapes = {(ck.model.encoder.img_size, ck.model.encoder.in_chans, ck.model.encoder.grid_size)
                  for ck in ckpts}
        if len(shapes) > 1:
            raise ValueError(f"checkpoints take different inputs (img_size, in_chans, token grid): {sorted(shapes)}")
        if set(args.what) & {"attention", "distance", "variance", "gradcam", "attnmap"}:
            for ck in ckpts:
                require_plain_vit(ck.model.encoder)
        cfg = load_config(args.data) if args.data else ckpts[0].cfg
        samples = fixed_samples(cfg, ckpts[0].model.encoder, args.split, args.num_samples, args.seed)
        out = args.out or args.checkpoint[0].resolve().parent / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        header = {"samples": samples.info, "checkpoint_paths": {n: str(p) for n, p in zip(names, args.checkpoint)}}
        payloads = {}
        probed = [w for w in args.what if w in ("attention", "distance", "variance")]
        if probed:
            payloads.update(run_probes(probed, ckpts, samples, args, device, out))
        for what in args.what:
            if what in RUNNERS:
                payloads[what] = RUNNERS[what](ckpts, samples, args, device, out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return fail(e)
    for what, payload in payloads.items():
        atomic_write_json(out / f"{what}.json", {**header, **payload})
        shown = out / f"{what}.png" if payload["checkpoints"] else "(no plot: no checkpoint to show)"
        print(f"{what}: {shown} + {out / what}.json")
    return 0

