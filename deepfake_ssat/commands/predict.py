"""``dfssat-predict`` / ``tools/predict.py``: fake probability per video, as one strict JSON list (one object per
video).

Outputs (``--out``, ``--annotate``) are checked before the model loads; a bad video is a status in its
record, never an exit code; Ctrl-C keeps the finished records where the JSON goes. The work itself is
:class:`deepfake_ssat.inference.Detector`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..metrics import STRATEGIES
from .extract_faces import add_detection_arguments
from ..faces.inputs import folder_items
from ..faces.store import FORMATS
from ..faces.video import BackendUnavailable, require_backend
from ..inference import Detector, expand_inputs
from ..io import atomic_write_text, dumps_strict
from ._cli import CommandParser, clobbers_run, fail, interrupted, positive_int, rerun_command


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(
        command=__name__,
        description="Fake probability of each video (face extraction in memory, then the face-clip model on every "
                    "face track: the video's probability is the highest track's, 'decided_by' names that track, "
                    "'tracks' lists each scored track). Prints a JSON list, one object per video; exit 0 when "
                    "every input was processed.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video file, or folder (every video under it)")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt / last.pt)")
    p.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    p.add_argument("--annotate", type=Path, metavar="DIR",
                   help="write a PNG strip per video (each scored face's box + probability)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--clips", type=int, default=4, help="clips sampled per video (default 4)")
    p.add_argument("--stride", type=int, default=2, help="frame stride inside a clip (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    p.add_argument("--strategy", choices=STRATEGIES, default="mean", help="clip -> video aggregation (default mean)")
    p.add_argument("--threshold", type=float, default=0.5, help="FAKE when the probability is >= this (default 0.5)")
    p.add_argument("--min-track-frames", type=int, metavar="N",
                   help="score every face track with a face in at least N sampled frames (>= 1; default: the "
                        "model's clip length); the main track is always scored")
    p.add_argument("--crop-size", type=positive_int,
                   help="side the face squares are first resized to, as dfssat-extract-faces "
                        "--size of the training data, >= 1 (default: as the model's training faces, else the "
                        "model's img_size)")
    p.add_argument("--store-format", choices=FORMATS,
                   help="encode each face crop as a dfssat-extract-faces --format store keeps it (tar / jpg: JPEG "
                        "quality 95; png / npy: lossless), so the model sees crops like its training crops "
                        "(default: the training store's, else lossless)")
    add_detection_arguments(p, from_training=True)
    p.add_argument("--quiet", action="store_true", help="no progress line per video on stderr")
    return p


def _given(**options) -> dict:
    """The face options set on the command line; the others come from the checkpoint's training extraction."""
    return {k: v for k, v in options.items() if v is not None}


def _output_problem(path: Path, what: str, want_dir: bool) -> str | None:
    """Why ``path`` cannot be written as a file (``want_dir`` False) or a folder of files (True), or None.

    Checked before any work: an existing path of the other kind, an ancestor that is a file, or a first
    existing ancestor that is not writable.
    """
    if path.exists() and path.is_dir() != want_dir:
        kind, wanted = ("file", "folder") if want_dir else ("folder", "file")
        return f"{what} {path}: is an existing {kind}; give a {wanted} path"
    if want_dir and path.is_dir():
        return None if os.access(path, os.W_OK | os.X_OK) else f"{what} {path}: folder is not writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{what} {path}: {parent} is a file, not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{what} {path}: folder {parent} is not writable"
    return None


def _json_list(records: list[dict]) -> str:
    """A strict JSON list (no NaN tokens), one video per line."""
    return "[\n" + ",\n".join(dumps_strict(r) for r in records) + "\n]"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when every input was processed (per-video statuses are in the JSON); 2 on a usage error
    (missing or unusable checkpoint, bad option, an --out / --annotate that cannot be written: checked
    before any work); 130 on Ctrl-C, after writing the videos finished so far where the JSON goes."""
    args = build_parser().parse_args(argv)
    if args.min_track_frames is not None and args.min_track_frames < 1:
        return fail(f"--min-track-frames must be >= 1, got {args.min_track_frames}")
    if args.out is not None:
        problem = clobbers_run(args.out, args.checkpoint) or _output_problem(args.out, "--out", want_dir=False)
        if problem is None and args.out.exists():
            videos = {p.resolve() for p in expand_inputs(args.inputs) if p.exists()}
            if args.out.resolve() in videos:
                problem = f"--out {args.out}: is one of the input videos; refusing to overwrite it"
        if problem:
            return fail(problem)
    if args.annotate is not None and (problem := _output_problem(args.annotate, "--annotate", want_dir=True)):
        return fail(problem)
    records: list[dict] = []
    total = None
    try:
        try:
            require_backend(args.backend)
            detector = Detector.from_checkpoint(
                args.checkpoint, args.device, clips=args.clips, stride=args.stride, crop_size=args.crop_size,
                batch_size=args.batch_size, strategy=args.strategy, threshold=args.threshold,
                min_track_frames=args.min_track_frames,
                video_backend=args.backend, **_given(min_face_fraction=args.min_face_fraction,
                                                     min_face_size=args.min_face, thresholds=args.thresholds,
                                                     crop_scale=args.crop_scale, store=args.store_format))
        except (FileNotFoundError, ValueError, BackendUnavailable) as e:
            return fail(e)
        for raw in args.inputs:
            if Path(raw).is_dir() and not folder_items(Path(raw)):
                print(f"warning: {raw}: no videos in this folder", file=sys.stderr)
        paths = expand_inputs(args.inputs)
        total = len(paths)
        for record in detector.iter_predictions(paths, args.annotate, progress=not args.quiet):
            records.append(record)
    except KeyboardInterrupt:
        return interrupted(_kept(records, total, args.out), rerun_command(__name__, argv))
    return _write_predictions(records, args.out)


def _kept(records: list[dict], total: int | None, out: Path | None) -> str:
    """What an interrupted predict keeps (the finished records, written where the JSON goes)."""
    if total is None:
        return "stopped before the first video; nothing predicted, nothing written"
    if not records:
        return f"0 of {total} videos predicted; nothing written"
    try:
        if out is not None:
            atomic_write_text(out, _json_list(records) + "\n")
        else:
            print(_json_list(records), flush=True)
    except OSError as e:
        return f"{len(records)} of {total} videos predicted but not kept: cannot write {out} ({e.strerror or e})"
    where = f"written to {out}" if out is not None else "printed on stdout"
    return f"{len(records)} of {total} videos predicted, {where} (a rerun predicts every video again)"


def _write_predictions(records: list[dict], out: Path | None) -> int:
    text = _json_list(records)
    if out is None:
        print(text)
        return 0
    try:
        atomic_write_text(out, text + "\n")
    except OSError as e:  # checked before the work, but the disk can still fill up: keep the results
        print(text)
        return fail(f"--out {out}: cannot write it ({e.strerror or e}); the predictions were printed on stdout")
    return 0
