"""``tools/extract_faces.py``: face crops + manifests for videos, DFDC parts and FF++ roots."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _thresholds(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected three comma-separated values in (0, 1], got {text!r}")
    return values


def add_detection_arguments(p: argparse.ArgumentParser) -> None:
    """The face detection and crop geometry options shared by extract_faces.py and predict.py."""
    p.add_argument("--detect-max-side", type=int, default=640,
                   help="detect on frames downscaled to this longer side, in pixels (default 640)")
    p.add_argument("--min-face", type=int, default=40,
                   help="smallest face searched, in pixels of the downscaled frame (default 40)")
    p.add_argument("--thresholds", type=_thresholds, default=(0.85, 0.95, 0.95),
                   help="MTCNN stage thresholds (default 0.85,0.95,0.95)")
    p.add_argument("--crop-scale", type=float, default=1.3, help="square side = max(w, h) x this (default 1.3)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="extract_faces.py",
        description="Extract face crops (MTCNN) from videos, a DFDC part/root or an FF++ root into --out, "
                    "with a manifest per video, index.jsonl and summary.json. Reruns skip finished videos.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="video file, folder, DFDC part/root or FF++ root")
    p.add_argument("--out", required=True, type=Path, help="output root")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--frames", type=int, help="frames spread uniformly over each video (default 32)")
    sampling.add_argument("--clips", type=int, help="instead: this many clips of --clip-len frames at --stride")
    p.add_argument("--clip-len", type=int, help="frames per clip, with --clips (default 16)")
    p.add_argument("--stride", type=int, help="frame stride inside a clip, with --clips (default 2)")
    add_detection_arguments(p)
    p.add_argument("--size", type=int, default=224, help="crop side in pixels after resizing (default 224)")
    p.add_argument("--keep", choices=("largest", "all"), default="largest",
                   help="keep the most persistent/largest face track or all tracks (default largest)")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="crop image format (default png)")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel (default 1)")
    p.add_argument("--shard", type=int, default=0, help="this job's shard index (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards the input is split into (default 1)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def extract_main(argv: list[str] | None = None) -> int:
    """Exit 0 when the batch completed (per-video failures are in summary.json); 2 on a usage error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    if args.clips is None and (args.clip_len is not None or args.stride is not None):
        parser.error("--clip-len and --stride need --clips")
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must be in [0, --num-shards={args.num_shards})")

    from .datasets import InputError, discover, shard
    from .extract import ExtractionParams, run_batch, summary_name
    from .sampling import SamplingPolicy

    try:
        policy = SamplingPolicy(frames=args.frames or 32, clips=args.clips or 0,
                                clip_len=args.clip_len or 16, stride=args.stride or 2)
        params = ExtractionParams(policy, args.detect_max_side, args.min_face, args.thresholds,
                                  args.crop_scale, args.size, args.keep, args.format)
        items = shard(discover(args.inputs), args.shard, args.num_shards)
    except (InputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    device = args.device or _default_device()
    summary = run_batch(items, args.out, params, device, args.workers, args.shard, args.num_shards,
                        progress=not args.no_progress)
    line = {"videos": summary["num_videos"], "counts": summary["counts"], "skipped": summary["skipped"],
            "crops": summary["num_crops"], "seconds": summary["seconds"],
            "summary": str(args.out / summary_name(args.shard, args.num_shards))}
    print(json.dumps(line))
    return 0


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
