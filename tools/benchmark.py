#!/usr/bin/env python
"""Benchmarks: ``python tools/benchmark.py model --json [--models small,tiny] [--frames 16] ...``.

Sub-commands: ``model`` (SSAT vs scratch train-step cost, P1/P2); ``faces`` (face extraction speed, P3/P4);
``loader`` (face-clip data loading speed, P5); ``eval`` (evaluation memory, P6). Prints one JSON object to stdout with ``--json``.
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{model,faces,loader,eval}")

    p = sub.add_parser("model", help="SSAT vs scratch train step: time ratio vs FLOP ratio (P1), "
                                     "fraction of fp32 matmul peak (P2)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: a short text summary)")
    p.add_argument("--models", type=_csv(str), default=["small", "tiny"],
                   help="comma-separated encoders: tiny, small, base or registered names (default small,tiny)")
    p.add_argument("--frames", type=int, default=16, help="clip length (default 16)")
    p.add_argument("--img-size", type=int, default=112, help="frame size in pixels (default 112)")
    p.add_argument("--batch", type=int, default=4, help="clips per step (default 4)")
    p.add_argument("--ratios", type=_csv(float), default=[0.75, 0.95], help="MAE mask ratios (default 0.75,0.95)")
    p.add_argument("--repeats", type=int, default=10, help="timed rounds per model (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per model first (default 2)")
    p.add_argument("--matmul-size", type=int, default=2048, help="square fp32 matmul for the peak (default 2048)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--default-malloc", action="store_true",
                   help="skip the glibc allocator tuning that tools/train.py applies (mallopt: keep freed "
                        "memory in the process so steps do not re-fault it)")
    p.add_argument("--seed", type=int, default=0)

    f = sub.add_parser("faces", help="face extraction vs naive full-resolution MTCNN (P3) and vs decode only (P4)")
    f.add_argument("--json", action="store_true", help="print one JSON object (default: a one-line summary)")
    f.add_argument("--frames", type=int, default=32, help="frames sampled from the video (default 32)")
    f.add_argument("--video-frames", type=int, default=300, help="length of the 1080p test video (default 300)")
    f.add_argument("--repeats", type=int, default=3, help="timed rounds of decode and ours, best kept (default 3)")
    f.add_argument("--device", default="cpu", help="MTCNN device (default cpu)")
    f.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")

    d = sub.add_parser("loader", help="face-clip loader frames/s per worker vs a plain image-read loop (P5)")
    d.add_argument("--json", action="store_true", help="print one JSON object (default: a one-line summary)")
    d.add_argument("--videos", type=int, default=8, help="synthetic extracted videos (default 8)")
    d.add_argument("--frames", type=int, default=32, help="stored crops per video (default 32)")
    d.add_argument("--crop-size", type=int, default=224, help="stored crop side in pixels (default 224)")
    d.add_argument("--img-size", type=int, default=224, help="clip frame size after augmentation (default 224)")
    d.add_argument("--clip-len", type=int, default=16, help="frames per clip (default 16)")
    d.add_argument("--format", choices=("png", "jpg"), default="png", help="stored crop format (default png)")
    d.add_argument("--repeats", type=int, default=3, help="timed passes, best kept (default 3)")

    e = sub.add_parser("eval", help="peak RSS evaluating 1,000 videos vs 100 (P6: streaming metrics)")
    e.add_argument("--json", action="store_true", help="print one JSON object (default: a one-line summary)")
    e.add_argument("--small", type=int, default=100, help="videos in the small run (default 100)")
    e.add_argument("--large", type=int, default=1000, help="videos in the large run (default 1000)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from deepfake_ssat.benchmark import format_summary, run_model_benchmark
    from deepfake_ssat.engine.runtime import tune_malloc

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    malloc = None if getattr(args, "default_malloc", True) else tune_malloc()
    command = shlex.join(["python", "tools/benchmark.py"] + (sys.argv[1:] if argv is None else list(argv)))
    if args.command == "model":
        try:
            result = run_model_benchmark(
                models=args.models, frames=args.frames, img_size=args.img_size, batch=args.batch,
                ratios=args.ratios, repeats=args.repeats, warmup=args.warmup,
                matmul_size=args.matmul_size, command=command, seed=args.seed, malloc=malloc)
        except (KeyError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    elif args.command == "faces":
        from deepfake_ssat.faces.benchmark import format_faces, run_faces_benchmark

        result = run_faces_benchmark(num_frames=args.video_frames, frames=args.frames, repeats=args.repeats,
                                     device=args.device, command=command)
        print(json.dumps(result, indent=2) if args.json else format_faces(result))
        return 0
    elif args.command == "loader":
        from deepfake_ssat.data.benchmark import format_loader, run_loader_benchmark

        result = run_loader_benchmark(videos=args.videos, frames=args.frames, crop_size=args.crop_size,
                                      img_size=args.img_size, clip_len=args.clip_len, image_format=args.format,
                                      repeats=args.repeats, command=command)
        print(json.dumps(result, indent=2) if args.json else format_loader(result))
        return 0
    elif args.command == "eval":
        from deepfake_ssat.eval.benchmark import format_eval, run_eval_benchmark

        result = run_eval_benchmark(small=args.small, large=args.large, command=command)
        print(json.dumps(result, indent=2) if args.json else format_eval(result))
        return 0
    print(json.dumps(result, indent=2) if args.json else format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
