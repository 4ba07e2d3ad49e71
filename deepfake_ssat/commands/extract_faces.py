"""``dfssat-extract-faces`` / ``tools/extract_faces.py``: face crops + manifests for videos, DFDC, FF++, Celeb-DF and
labelled video lists.

Usage errors (a bad flag value, ``--device cuda`` without a GPU, an ``--out`` that cannot be written, an
input without videos) end with one ``error:`` line and exit 2 before any work; Ctrl-C ends with one
``interrupted:`` line (what was kept, how to continue) and exit 130. ``--reindex OUT`` only rebuilds
``OUT/index.jsonl`` from the manifests (for a store written before the index, or one whose index is lost).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from ..faces.detect import DEFAULT_THRESHOLDS
from ..faces.store import CONTAINERS, DEFAULT_FORMAT, FORMATS, JPEG_QUALITY
from ._cli import CommandParser, fail, interrupted, positive_float, rerun_command

POSITIVE_INT_FLAGS = ("frames", "clips", "clip_len", "stride", "size", "min_face", "workers",
                      "num_shards")


def _thresholds(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(t) for t in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected three comma-separated values in (0, 1], got {text!r}")
    return values


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1) of the frame's shorter side, got {text!r} "
                                         f"(a size in pixels goes to --min-face)")
    return value


def add_detection_arguments(p: argparse.ArgumentParser, from_training: bool = False) -> None:
    """The face detection and crop geometry options shared by dfssat-extract-faces and dfssat-predict;
    ``from_training`` (predict): unset options (None) mean the values the model's training data was extracted with."""
    def default(value, shown: str) -> tuple:
        return (None, f"(default: as the model's training faces, else {shown})") if from_training else \
            (value, f"(default {shown})")

    value, note = default(0.05, "0.05: 54 px in 1080p, 36 in 720p")
    p.add_argument("--min-face-fraction", type=_fraction, default=value,
                   help=f"smallest face searched, as a fraction of the frame's shorter side {note}")
    value, note = default(20, "20")
    p.add_argument("--min-face", type=int, default=value,
                   help=f"... and never smaller than this many pixels {note}")
    value, note = default(DEFAULT_THRESHOLDS, ",".join(map(str, DEFAULT_THRESHOLDS)))
    p.add_argument("--thresholds", type=_thresholds, default=value, help=f"MTCNN stage thresholds {note}")
    value, note = default(1.3, "1.3")
    p.add_argument("--crop-scale", type=positive_float, default=value, help=f"square side = max(w, h) x this {note}")
    p.add_argument("--backend", choices=("decord", "pyav"), default="decord",
                   help="video decoder: decord (default) or pyav (PyAV: FFmpeg wheels for ARM and macOS too); both "
                        "give the same frames, so switching redoes no finished video")


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        command=__name__,
        description="Extract face crops (MTCNN) from videos, a DFDC part/root or an FF++ root into --out, "
                    "with a manifest per video, index.jsonl and summary.json. Reruns skip finished videos. "
                    "--reindex OUT rebuilds OUT/index.jsonl from the manifests, extracting nothing.")
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video file, folder, DFDC part/root, DFDC test folder (labels.csv), FF++ or Celeb-DF root")
    p.add_argument("--list", type=Path, metavar="CSV",
                   help="a labelled list of your own videos: CSV path,label[,group][,split] (label REAL/FAKE or "
                        "0/1, 1 = fake; paths relative to the CSV); extracted to <out>/list/... with the labels")
    p.add_argument("--out", type=Path, help="output root (required unless --reindex)")
    p.add_argument("--reindex", type=Path, metavar="OUT",
                   help="only rebuild OUT/index.jsonl from every manifest under OUT (no extraction), e.g. for a "
                        "store written before the index existed")
    sampling = p.add_mutually_exclusive_group()
    sampling.add_argument("--frames", type=int, help="frames spread uniformly over each video (default 32)")
    sampling.add_argument("--clips", type=int, help="instead: this many clips of --clip-len frames at --stride")
    p.add_argument("--clip-len", type=int, help="frames per clip, with --clips (default 16)")
    p.add_argument("--stride", type=int, help="frame stride inside a clip, with --clips (default 2)")
    add_detection_arguments(p)
    p.add_argument("--size", type=int, default=224, help="crop side in pixels after resizing (default 224)")
    p.add_argument("--keep", choices=("largest", "all"), default="largest",
                   help="keep the most persistent/largest face track or all tracks (default largest)")
    p.add_argument("--format", choices=FORMATS, default=DEFAULT_FORMAT,
                   help=f"how crops are stored: tar (default): one {CONTAINERS['tar']} of JPEG (quality "
                        f"{JPEG_QUALITY}) crops per video; npy: one uint8 {CONTAINERS['npy']} array per video (no "
                        f"decoding, but ~4.8 MB per 32 crops of 224 px); png / jpg: one image file per crop")
    p.add_argument("--workers", type=int, default=1, help="videos processed in parallel (default 1)")
    p.add_argument("--shard", type=int, default=0, help="this job's shard index (default 0)")
    p.add_argument("--num-shards", type=int, default=1, help="number of shards the input is split into (default 1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto: cuda if available)")
    p.add_argument("--allow-empty", action="store_true",
                   help="exit 0 when an input holds no video (default: that is an error, exit 2)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    return p


def _check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``parser.error`` (one line, exit 2) for a flag value that cannot work."""
    for name in POSITIVE_INT_FLAGS:
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    if args.crop_scale <= 0:
        parser.error(f"--crop-scale must be positive, got {args.crop_scale}")
    if args.clips is None and (args.clip_len is not None or args.stride is not None):
        parser.error("--clip-len and --stride need --clips")
    if args.reindex is not None:
        if args.inputs or args.list is not None or args.out is not None:
            parser.error("--reindex OUT takes no INPUT, --list or --out: it only rebuilds OUT/index.jsonl")
        return
    if args.out is None:
        parser.error("--out is required (or --reindex OUT)")
    if not args.inputs and args.list is None:
        parser.error("give at least one INPUT or --list CSV")
    if not 0 <= args.shard < args.num_shards:
        parser.error(f"--shard must be in [0, --num-shards={args.num_shards})")


def out_error(out: Path) -> str | None:
    """Why files cannot be written under ``out`` (created if missing, checked with a probe file), or None."""
    if out.exists() and not out.is_dir():
        return f"--out {out}: is a file, not a folder; choose a folder"
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        return f"--out {out}: cannot create or write files there ({e.strerror or e}); choose a writable folder"
    return None


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the batch completed (per-video failures are in summary.json); 2 on a usage error
    (flag errors exit 2 via ``SystemExit``); 130 on Ctrl-C."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_flags(parser, args)
    if args.reindex is not None:
        return _reindex(args.reindex)
    try:
        return _extract(args)
    except KeyboardInterrupt as e:
        from ..faces.extract import BatchInterrupted

        command = rerun_command(__name__, argv)
        if not isinstance(e, BatchInterrupted):
            return interrupted("no video was extracted yet", command)
        done = sum(not r["skipped"] and r["status"] in ("ok", "no_face") for r in e.records)
        return interrupted(f"{done} video(s) finished in this run are complete in {args.out} and a rerun skips "
                           f"them; no video was left half-written", command)


def _extract(args: argparse.Namespace) -> int:
    from ..faces.inputs import InputError, NoVideosError, discover, shard
    from ..faces.extract import ExtractionParams, run_batch, summary_name
    from ..faces.sampling import SamplingPolicy
    from ..faces.video import BackendUnavailable, require_backend
    from ..runtime import resolve_device

    try:
        device = str(resolve_device(args.device))
        policy = SamplingPolicy(frames=32 if args.frames is None else args.frames,
                                clips=0 if args.clips is None else args.clips,
                                clip_len=16 if args.clip_len is None else args.clip_len,
                                stride=2 if args.stride is None else args.stride)
        require_backend(args.backend)
        params = ExtractionParams(policy, args.min_face_fraction, args.min_face, args.thresholds,
                                  args.crop_scale, args.size, args.keep, args.format, video_backend=args.backend)
        items = shard(discover(args.inputs, allow_empty=args.allow_empty, video_list=args.list), args.shard,
                      args.num_shards)
    except NoVideosError as e:
        return fail(f"{e}; pass --allow-empty to accept that")
    except (InputError, ValueError, BackendUnavailable) as e:
        return fail(e)
    if error := out_error(args.out):
        return fail(error)
    summary = run_batch(items, args.out, params, device, args.workers, args.shard, args.num_shards,
                        progress=not args.no_progress)
    line = {"videos": summary["num_videos"], "counts": summary["counts"], "skipped": summary["skipped"],
            "crops": summary["num_crops"], "seconds": summary["seconds"],
            "summary": str(args.out / summary_name(args.shard, args.num_shards))}
    print(json.dumps(line))
    return 0


def _reindex(out: Path) -> int:
    """Rebuild ``out/index.jsonl`` from the manifests under ``out``; prints one JSON line."""
    from ..faces.extract import write_index

    if not out.is_dir():
        return fail(f"--reindex {out}: not a folder; give the --out folder of an extraction")
    start, left_out = time.perf_counter(), []
    try:
        rows = write_index(out, left_out)
    except OSError as e:
        return fail(f"--reindex {out}: cannot write the index there ({e.strerror or e})")
    for message in left_out:
        print(f"[extract] left out of the index: {message}", file=sys.stderr)
    print(json.dumps({"index": str(out / "index.jsonl"), "videos": rows, "left_out": left_out,
                      "seconds": round(time.perf_counter() - start, 3)}))
    return 0
