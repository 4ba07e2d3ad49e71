"""Benchmarks: one sub-command per module of :mod:`deepfake_ssat.bench`, each printing one JSON object with
``--json`` (else a short text summary): ``model`` (P1/P2), ``faces`` (recall vs full-resolution MTCNN, P3/P4),
``loader`` (P5), ``store`` (start-up on a 10k-video face store), ``eval`` (P6).

A sub-command imports its benchmark only when it runs, so ``--help`` loads neither torch nor a video decoder.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from typing import Any, Callable, TypeVar

from ..faces.store import FORMATS
from ..runtime import resolve_device
from ._cli import CommandParser, fail, rerun_command

T = TypeVar("T")
Result = dict[str, Any]
Summary = Callable[[Result], str]
Runner = Callable[[argparse.Namespace, str], tuple[Result, Summary]]

THREADS_HELP = "torch.set_num_threads (default: torch's choice)"


def _csv(kind: type[T]) -> Callable[[str], list[T]]:
    """An argparse type: comma-separated ``kind`` values, at least one."""
    def parse(text: str) -> list[T]:
        try:
            items = [kind(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
        if not items:
            raise argparse.ArgumentTypeError("expected at least one value")
        return items
    return parse


def _model(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.model import format_summary, run_model_benchmark
    from ..data.workers import tune_malloc

    malloc = None if args.default_malloc else tune_malloc()
    return run_model_benchmark(
        models=args.models, frames=args.frames, img_size=args.img_size, batch=args.batch, ratios=args.ratios,
        repeats=args.repeats, warmup=args.warmup, matmul_size=args.matmul_size, command=command, seed=args.seed,
        malloc=malloc, device=args.device, compile_steps=args.compile), format_summary


def _faces(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.faces import format_faces, run_faces_benchmark

    return run_faces_benchmark(scenes=args.scenes, num_frames=args.video_frames, frames=args.frames,
                               repeats=args.repeats, device=args.device, command=command), format_faces


def _loader(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.loader import format_loader, run_loader_benchmark

    formats = FORMATS if args.format is None else (args.format,)
    return run_loader_benchmark(videos=args.videos, frames=args.frames, crop_size=args.crop_size,
                                img_size=args.img_size, clip_len=args.clip_len, formats=formats, clips=args.clips,
                                repeats=args.repeats, workers=None if args.workers is None else tuple(args.workers),
                                command=command), format_loader


def _train(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.train import format_train, run_train_benchmark
    from ..data.workers import tune_malloc

    tune_malloc()
    return run_train_benchmark(config=args.config, device=args.device, steps=args.steps, warmup=args.warmup,
                               batch=args.batch, num_workers=args.num_workers, opts=args.opts,
                               command=command), format_train


def _store(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.store import format_store, run_store_benchmark

    return run_store_benchmark(videos=args.videos, frames=args.frames, crop_size=args.crop_size,
                               repeats=args.repeats, command=command), format_store


def _eval(args: argparse.Namespace, command: str) -> tuple[Result, Summary]:
    from ..bench.eval import format_eval, run_eval_benchmark

    return run_eval_benchmark(small=args.small, large=args.large, command=command), format_eval


def _sub_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, run: Runner, what: str,
                 text: str = "a one-line summary") -> argparse.ArgumentParser:
    """Sub-command ``name`` (``what`` it measures), run by ``run``, with its ``--json`` flag (else ``text``)."""
    parser = sub.add_parser(name, help=what)
    parser.set_defaults(run=run)
    parser.add_argument("--json", action="store_true", help=f"print one JSON object (default: {text})")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        command=__name__, description="Benchmarks: one JSON object each with --json, else a short text summary.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{model,faces,loader,store,train,eval}")

    p = _sub_command(sub, "model", _model, "SSAT vs scratch train step: time ratio vs FLOP ratio (P1), "
                                           "fraction of fp32 matmul peak (P2)", "a short text summary")
    p.add_argument("--models", type=_csv(str), default=["small", "tiny"],
                   help="comma-separated encoders: tiny, small, base or registered names (default small,tiny)")
    p.add_argument("--frames", type=int, default=16, help="clip length (default 16)")
    p.add_argument("--img-size", type=int, default=112, help="frame size in pixels (default 112)")
    p.add_argument("--batch", type=int, default=4, help="clips per step (default 4)")
    p.add_argument("--ratios", type=_csv(float), default=[0.75, 0.95], help="MAE mask ratios (default 0.75,0.95)")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds per model (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per model first (default 2)")
    p.add_argument("--matmul-size", type=int, default=2048, help="square fp32 matmul for the peak (default 2048)")
    p.add_argument("--threads", type=int, help=THREADS_HELP)
    p.add_argument("--default-malloc", action="store_true",
                   help="skip the glibc allocator tuning that dfssat-train applies (mallopt: keep freed "
                        "memory in the process so steps do not re-fault it)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu",
                   help="cpu (fp32), cuda[:N] (bf16 autocast, fused AdamW; MFU against a bf16 matmul; use "
                        "--matmul-size 8192 there) or auto (default cpu)")
    p.add_argument("--compile", action="store_true",
                   help="time torch.compile-d steps, as train.compile: true trains (compiled before timing)")

    f = _sub_command(sub, "faces", _faces,
                     "face extraction vs naive full-resolution MTCNN: recall, IoU, speed-up (P3); vs decode only "
                     "(P4); on DFDC-like synthetic videos", "a short text summary")
    f.add_argument("--scenes", type=_csv(str),
                   help="comma-separated scenes of deepfake_ssat.synthetic.scenes.REAL_CONDITIONS (default: all)")
    f.add_argument("--frames", type=int, default=16, help="frames sampled from each video (default 16)")
    f.add_argument("--video-frames", type=int, default=120, help="length of each test video (default 120)")
    f.add_argument("--repeats", type=int, default=3, help="timed rounds of decode and ours, best kept (default 3)")
    f.add_argument("--device", default="cpu", help="MTCNN device: auto, cpu, cuda or cuda:N (default cpu)")
    f.add_argument("--threads", type=int, help=THREADS_HELP)

    d = _sub_command(sub, "loader", _loader, "face-clip loader frames/s per worker vs reading the same crops, per "
                                            "store format (P5)")
    d.add_argument("--videos", type=int, default=8, help="synthetic extracted videos (default 8)")
    d.add_argument("--frames", type=int, default=32, help="stored crops per video (default 32)")
    d.add_argument("--crop-size", type=int, default=224, help="stored crop side in pixels (default 224)")
    d.add_argument("--img-size", type=int, default=224, help="clip frame size after augmentation (default 224)")
    d.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16)")
    d.add_argument("--format", choices=FORMATS, help="one store format (default: each of them)")
    d.add_argument("--clips", type=int, default=64, help="clips per timed pass (default 64)")
    d.add_argument("--repeats", type=int, default=3, help="timed passes, best kept (default 3)")
    d.add_argument("--workers", type=int, nargs="*", metavar="N",
                   help="DataLoader worker counts to measure on the default format (default 1 .. the CPU count; "
                        "none: skip)")

    s = _sub_command(sub, "store", _store, "start-up on a synthetic face store: scan with the index vs walking "
                                           "every manifest, and bytes per video per format")
    s.add_argument("--videos", type=int, default=10_000, help="synthetic videos in the store (default 10000)")
    s.add_argument("--frames", type=int, default=32, help="crops per video (default 32)")
    s.add_argument("--crop-size", type=int, default=224, help="crop side in pixels (default 224)")
    s.add_argument("--repeats", type=int, default=2, help="timed scans of each kind, best kept (default 2)")

    t = _sub_command(sub, "train", _train, "the real trainer (train_one_epoch) on a synthetic store vs the isolated "
                                           "train step: e2e_over_step")
    t.add_argument("--config", default="video/tiny/dfdc_videomae_095",
                   help="training config, packaged name or file (default video/tiny/dfdc_videomae_095)")
    t.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    t.add_argument("--steps", type=int, default=20, help="timed updates (default 20)")
    t.add_argument("--warmup", type=int, default=3, help="untimed updates first (default 3)")
    t.add_argument("--batch", type=int, help="clips per step (default: the config's)")
    t.add_argument("--num-workers", type=int, help="loader workers (default: the config's)")
    t.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, as in dfssat-train")
    t.add_argument("--threads", type=int, help=THREADS_HELP)

    e = _sub_command(sub, "eval", _eval, "peak RSS evaluating 1,000 videos vs 100 (P6: streaming metrics)")
    e.add_argument("--small", type=int, default=100, help="videos in the small run (default 100)")
    e.add_argument("--large", type=int, default=1000, help="videos in the large run (default 1000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    run: Runner = args.run
    try:
        if getattr(args, "device", None) is not None:  # auto, cpu, cuda[:N]: as every command takes them
            args.device = str(resolve_device(args.device))
        with contextlib.redirect_stdout(sys.stderr):  # progress lines of the code under test (the trainer's, ...)
            result, summary = run(args, shlex.join(rerun_command(__name__, argv)))
    except (KeyError, ValueError) as e:  # bad input: an encoder the registry lacks (KeyError), bad sizes
        return fail(e)
    print(json.dumps(result, indent=2) if args.json else summary(result))  # stdout: this, and only this
    return 0
