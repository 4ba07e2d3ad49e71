"""Single-video inference: decode -> detect faces -> main track -> face clips -> encoder -> fake probability.

The pipeline is the training one done in memory: frames are sampled as ``tools/extract_faces.py
--clips K --clip-len T --stride s`` samples them, faces are found and tracked by the same code, the
main track's squares are cropped and resized as the extraction stores them (``crop_size``), then
resized and normalised exactly as :class:`~deepfake_ssat.data.faceclips.FaceClipDataset` does at
evaluation. Each sampled clip with a face gives one clip of ``T`` crops (the last crop repeated when
the track is short there); the video score aggregates the clips' fake probabilities.

``python tools/predict.py VIDEO_OR_DIR [...] --checkpoint CKPT [--out FILE]`` and
``Detector.from_checkpoint(path).predict_video(video)`` both give, per video, a dict with ``path``,
``status`` (ok | no_face | unreadable | missing | error), ``reason`` (one line or None),
``fake_probability`` and ``label`` (FAKE / REAL; None unless ok), ``num_faces``, ``num_clips``,
``per_clip`` (fake probability of each clip), ``frames`` (frame indices of the crops used) and
``boxes`` (their face boxes x1, y1, x2, y2 in frame pixels), ``annotation`` (PNG path or None) and
``seconds``. A model whose output is NaN / inf (e.g. corrupted weights) gives status ``error`` with no
score: never a verdict computed from NaN. The JSON written is strict (no ``NaN`` tokens).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np
import torch
import torch.nn as nn

from .config import Config
from .engine.runtime import amp_dtype, autocast, resolve_device
from .data.faceclips import IMAGENET_MEAN, IMAGENET_STD, centre_box, clip_positions, resized_crop
from .eval.metrics import STRATEGIES, aggregate
from .faces.datasets import folder_items
from .faces.detect import FaceDetector, FrameFaces, Track, link_tracks, main_track, square_crop_box
from .faces.extract import ExtractionParams, VideoFailure, _first_line, open_video, read_frames
from .faces.sampling import SamplingPolicy
from .io import atomic_write, atomic_write_text, dumps_strict
from .runcli import fail, interrupted, tool_command

_STD = torch.tensor(IMAGENET_STD)
_SCALE = (1.0 / (255.0 * _STD)).view(3, 1, 1, 1)  # as FaceClipDataset: uint8 -> normalised, one multiply-add
_SHIFT = (-torch.tensor(IMAGENET_MEAN) / _STD).view(3, 1, 1, 1)
STRIP_HEIGHT = 240  # pixels: height of each frame in an annotation strip
STRIP_FRAMES = 4


class NonFiniteOutput(ValueError):
    """The model gave NaN / inf logits (broken or corrupted weights): no probability can be given."""


def _nonfinite_reason(n_nan: int, n_inf: int, total: int) -> str:
    """One line: how many of ``total`` clips had NaN / inf logits, and the likely cause."""
    kinds = " and ".join(k for k, n in (("NaN", n_nan), ("inf", n_inf)) if n)
    return (f"model output is not finite ({kinds}) for {n_nan + n_inf} of {total} clips; "
            f"the checkpoint's weights may be corrupted")


def model_geometry(encoder: nn.Module, cfg: Config) -> tuple[int, int]:
    """``(img_size, num_frames)`` of a video encoder (its attributes, else the config); ValueError otherwise."""
    img_size = getattr(encoder, "img_size", None) or cfg.model.img_size
    num_frames = getattr(encoder, "num_frames", None) or cfg.model.num_frames
    if not img_size or not num_frames:
        raise ValueError(f"model {cfg.model.name!r} is not a video model (no img_size / num_frames); "
                         f"inference needs a face-clip checkpoint")
    return int(img_size), int(num_frames)


def clip_tensor(crops: np.ndarray) -> torch.Tensor:
    """Face crops [T, S, S, 3] uint8 RGB -> [3, T, S, S] float32, normalised as FaceClipDataset does."""
    clip = torch.from_numpy(crops).permute(3, 0, 1, 2)
    out = torch.empty(clip.shape, dtype=torch.float32).copy_(clip)
    return out.mul_(_SCALE).add_(_SHIFT)


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Video paths of ``inputs``: a folder means every video under it (recursive), anything else itself
    (a missing path is kept, and reported as ``missing`` by :meth:`Detector.predict_video`)."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        paths += [item.path for item in folder_items(path)] if path.is_dir() else [path]
    return paths


class Detector:
    """A face-clip classifier and its face pipeline: video file -> fake probability.

    ``encoder(x [B, 3, T, S, S]) -> logits [B, 2]``, class 1 = fake, with ``S = img_size`` and
    ``T = num_frames``. ``params.sampling`` must be clip mode with ``clip_len == num_frames``;
    ``params.crop_size`` is the side the crops are first resized to (the extraction's ``--size``),
    then resized to ``img_size`` as the training dataset does when the two differ. The main face
    track is always used (``params.keep`` and ``params.image_format`` do not apply).
    """

    def __init__(self, encoder: nn.Module, img_size: int, num_frames: int, device: str | torch.device = "cpu",
                 params: ExtractionParams | None = None, batch_size: int = 8, strategy: str = "mean",
                 threshold: float = 0.5) -> None:
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.img_size, self.num_frames = img_size, num_frames
        self.params = params or ExtractionParams(SamplingPolicy(clips=4, clip_len=num_frames, stride=2),
                                                 crop_size=img_size)
        sampling = self.params.sampling
        if not sampling.clips or sampling.clip_len != num_frames:
            raise ValueError(f"sampling must be clips of the model's {num_frames} frames, got {sampling.to_dict()}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if batch_size < 1 or not 0 <= threshold <= 1:
            raise ValueError(f"batch_size must be >= 1 and threshold in [0, 1], got {batch_size}, {threshold}")
        self.batch_size, self.strategy, self.threshold = batch_size, strategy, threshold
        self.faces: FaceDetector = self.params.detector(str(self.device))
        self.amp_dtype = amp_dtype("bf16", self.device)  # autocast on CUDA only

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", *, clips: int = 4, stride: int = 2,
                        crop_size: int | None = None, batch_size: int = 8, strategy: str = "mean",
                        threshold: float = 0.5, **extraction) -> "Detector":
        """A detector from a training checkpoint (decoder weights are not needed).

        ``clips`` x model ``num_frames`` frames ``stride`` apart are sampled per video; ``crop_size``
        defaults to the model's ``img_size`` (one resize); ``extraction``: other
        :class:`ExtractionParams` fields (``detect_max_side``, ``min_face_size``, ``thresholds``,
        ``crop_scale``). Raises FileNotFoundError / ValueError for a missing or unusable checkpoint.
        """
        from .engine.checkpoint import load_inference_model

        if clips < 1:
            raise ValueError(f"clips must be >= 1, got {clips}")
        torch_device = resolve_device(device)
        encoder, cfg = load_inference_model(path, "cpu")
        if getattr(encoder, "num_classes", 2) != 2:
            raise ValueError(f"{path}: the head has {encoder.num_classes} classes; a real/fake detector needs 2")
        img_size, num_frames = model_geometry(encoder, cfg)
        params = ExtractionParams(SamplingPolicy(clips=clips, clip_len=num_frames, stride=stride),
                                  crop_size=crop_size or img_size, **extraction)
        return cls(encoder, img_size, num_frames, torch_device, params, batch_size, strategy, threshold)

    # ------------------------------------------------------------------------------------------ API

    def predict_video(self, path: str | Path, annotate: str | Path | None = None) -> dict:
        """The prediction record of one video (see the module docstring); never raises for a bad video.

        ``annotate``: write a PNG strip of a few sampled frames with the face box and the score there.
        """
        start = time.perf_counter()
        record = {"path": str(path), "status": "ok", "reason": None, "fake_probability": None, "label": None,
                  "num_faces": 0, "num_clips": 0, "per_clip": [], "frames": [], "boxes": [], "annotation": None}
        try:
            record.update(self._predict(Path(path), Path(annotate) if annotate else None))
        except VideoFailure as e:
            record.update(status=e.status, reason=e.reason)
        except NonFiniteOutput as e:  # a NaN score must never become a verdict
            record.update(status="error", reason=str(e))
        except Exception as e:  # one broken video never stops a batch
            record.update(status="error", reason=f"{path}: {type(e).__name__}: {_first_line(e)}")
        record["seconds"] = round(time.perf_counter() - start, 3)
        return record

    def predict_many(self, paths: Iterable[str | Path], annotate_dir: str | Path | None = None,
                     progress: bool = False) -> list[dict]:
        """:meth:`predict_video` for each of ``paths`` (folders expanded to the videos under them).

        ``annotate_dir``: one ``<stem>.png`` strip per decoded video (``<stem>_N.png`` on name clashes);
        ``progress``: one line per video on stderr.
        """
        return list(self.iter_predictions(paths, annotate_dir, progress))

    def iter_predictions(self, paths: Iterable[str | Path], annotate_dir: str | Path | None = None,
                         progress: bool = False) -> Iterator[dict]:
        """:meth:`predict_many` one record at a time (a caller keeps what finished if it is interrupted)."""
        used: set[str] = set()
        for path in expand_inputs(paths):
            target = None
            if annotate_dir is not None:
                stem, n = path.stem or "video", 1
                name = f"{stem}.png"
                while name in used:
                    name, n = f"{stem}_{n}.png", n + 1
                used.add(name)
                target = Path(annotate_dir) / name
            record = self.predict_video(path, target)
            yield record
            if progress:  # after the caller took the record: a printed line means a kept record (Ctrl-C)
                p = record["fake_probability"]
                score = "" if p is None else f" {record['label']} {p:.3f}"
                print(f"[predict] {path}: {record['status']}{score}", file=sys.stderr, flush=True)

    def score_clips(self, clips: torch.Tensor) -> np.ndarray:
        """Fake probabilities [N] of clips [N, 3, T, S, S] (normalised), in batches of ``batch_size``.

        Raises :class:`NonFiniteOutput` (one line) when any clip's logits are NaN / inf.
        """
        probs, n_nan, n_inf = [], 0, 0
        with torch.inference_mode(), autocast(self.device, self.amp_dtype):
            for batch in clips.split(self.batch_size):
                logits = self.encoder(batch.to(self.device, non_blocking=True)).float()
                finite = torch.isfinite(logits).all(dim=1)
                if not bool(finite.all()):
                    nan = torch.isnan(logits).any(dim=1)
                    n_nan += int(nan.sum())
                    n_inf += int((~finite & ~nan).sum())
                probs.append(logits.softmax(dim=1)[:, 1].cpu())
        if n_nan or n_inf:
            raise NonFiniteOutput(_nonfinite_reason(n_nan, n_inf, len(clips)))
        return torch.cat(probs).numpy()

    # ------------------------------------------------------------------------------------ pipeline

    def face_crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The model input for one face: (H, W, 3) uint8 frame and box (4,) -> (S, S, 3) uint8.

        Square of ``crop_scale`` x the box, resized to ``crop_size`` as the extraction stores it, then
        to ``img_size`` (shorter side + centre crop) as the training dataset reads it.
        """
        height, width = frame.shape[:2]
        x1, y1, x2, y2 = square_crop_box(box, self.params.crop_scale, width, height)
        crop = resized_crop(frame[None], self.params.crop_size, (x1, y1, x2 - x1, y2 - y1), flip=False)
        if self.params.crop_size != self.img_size:
            crop = resized_crop(crop, self.img_size, centre_box(*crop.shape[1:3]), flip=False)
        return crop[0]

    def _predict(self, path: Path, annotate: Path | None) -> dict:
        reader = open_video(path)
        num_frames = len(reader)
        clip_lists = self.params.sampling.clip_lists(num_frames)
        indices = sorted({i for clip in clip_lists for i in clip})
        frames = read_frames(reader, indices)
        faces = self.faces.detect(frames)
        track = main_track(link_tracks(faces), faces)
        if track is None:
            if annotate is not None:
                write_strip(annotate, frames, indices, faces, None, "no face")
            return {"status": "no_face", "reason": f"no face found in {len(indices)} sampled frames",
                    "annotation": str(annotate) if annotate is not None else None}

        crops = {pos: self.face_crop(frames[pos], faces[pos].boxes[det]) for pos, det in track.members.items()}
        position = {frame: pos for pos, frame in enumerate(indices)}
        clips, padded = [], 0
        for clip in clip_lists:
            members = [position[i] for i in clip if position[i] in crops]
            if not members:
                continue
            padded += len(members) < self.num_frames
            picks = clip_positions(len(members), self.num_frames, 1, 0)
            clips.append(clip_tensor(np.stack([crops[members[p]] for p in picks])))
        probs = self.score_clips(torch.stack(clips))
        probability = aggregate(probs, self.strategy)
        label = "FAKE" if probability >= self.threshold else "REAL"
        if annotate is not None:
            write_strip(annotate, frames, indices, faces, track, f"{label} {probability:.3f}")
        used = sorted(track.members)
        return {"reason": self._notes(num_frames, len(clip_lists), len(indices), len(used), padded, len(clips)),
                "fake_probability": probability, "label": label, "num_faces": len(used),
                "num_clips": len(clips), "per_clip": probs.tolist(), "frames": [indices[p] for p in used],
                "boxes": [[round(float(v), 2) for v in faces[p].boxes[track.members[p]]] for p in used],
                "annotation": str(annotate) if annotate is not None else None}

    def _notes(self, num_frames: int, room: int, sampled: int, with_face: int, padded: int,
               num_clips: int) -> str | None:
        """One line on what fell short of the request (None when nothing did)."""
        asked = self.params.sampling.clips
        notes = []
        if room < asked:
            notes.append(f"video has {num_frames} frames: room for {room} of {asked} clips")
        if with_face < sampled:
            notes.append(f"no face in {sampled - with_face} of {sampled} sampled frames")
        if padded:
            notes.append(f"{padded} of {num_clips} clips padded by repeating their last face")
        return "; ".join(notes) or None


def write_strip(path: Path, frames: list[np.ndarray], indices: list[int], faces: list[FrameFaces],
                track: Track | None, text: str) -> None:
    """PNG of up to :data:`STRIP_FRAMES` frames side by side (each ``STRIP_HEIGHT`` px high), the main
    ``track``'s face box drawn on each (red for FAKE, green otherwise) and ``text`` + frame index on top.

    ``frames``: (H, W, 3) uint8 RGB, one per sampled index in ``indices``.
    """
    positions = sorted(track.members) if track is not None else list(range(len(frames)))
    picks = [positions[i] for i in sorted(set(np.linspace(0, len(positions) - 1, STRIP_FRAMES).round().astype(int)))]
    colour = (0, 0, 255) if text.startswith("FAKE") else (0, 200, 0)  # BGR
    tiles = []
    for pos in picks:
        height, width = frames[pos].shape[:2]
        scale = STRIP_HEIGHT / height
        tile = cv2.resize(cv2.cvtColor(frames[pos], cv2.COLOR_RGB2BGR), (max(1, round(width * scale)), STRIP_HEIGHT),
                          interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        if track is not None:
            x1, y1, x2, y2 = (faces[pos].boxes[track.members[pos]] * scale).round().astype(int).tolist()
            cv2.rectangle(tile, (x1, y1), (x2, y2), colour, 2)
        for thickness, ink in ((3, (0, 0, 0)), (1, (255, 255, 255))):  # outlined, legible on any background
            cv2.putText(tile, f"#{indices[pos]} {text}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, ink, thickness,
                        cv2.LINE_AA)
        tiles.append(tile)
    ok, png = cv2.imencode(path.suffix or ".png", cv2.hconcat(tiles))
    if not ok:
        raise OSError(f"{path}: cannot encode the image")
    atomic_write(path, lambda f: f.write(png.tobytes()))  # never a half-written strip (Ctrl-C, full disk)


# ---------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    from .faces.cli import add_detection_arguments

    p = argparse.ArgumentParser(
        prog="predict.py",
        description="Fake probability of each video (face extraction in memory, then the face-clip model). "
                    "Prints a JSON list, one object per video; exit 0 when every input was processed.")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video file, or folder (every video under it)")
    p.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt / last.pt)")
    p.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    p.add_argument("--annotate", type=Path, metavar="DIR", help="write a PNG strip per video (face box + score)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--clips", type=int, default=4, help="clips sampled per video (default 4)")
    p.add_argument("--stride", type=int, default=2, help="frame stride inside a clip (default 2)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per forward pass (default 8)")
    p.add_argument("--strategy", choices=STRATEGIES, default="mean", help="clip -> video aggregation (default mean)")
    p.add_argument("--threshold", type=float, default=0.5, help="FAKE when the probability is >= this (default 0.5)")
    p.add_argument("--crop-size", type=int, help="side the face squares are first resized to, as extract_faces.py "
                                                 "--size of the training data (default: the model's img_size)")
    add_detection_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress line per video on stderr")
    return p


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


def predict_main(argv: list[str] | None = None) -> int:
    """Exit 0 when every input was processed (per-video statuses are in the JSON); 2 on a usage error
    (missing or unusable checkpoint, bad option, an --out / --annotate that cannot be written: checked
    before any work); 130 on Ctrl-C, after writing the videos finished so far where the JSON goes."""
    args = build_parser().parse_args(argv)
    if args.out is not None:
        problem = _output_problem(args.out, "--out", want_dir=False)
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
            detector = Detector.from_checkpoint(
                args.checkpoint, args.device, clips=args.clips, stride=args.stride, crop_size=args.crop_size,
                batch_size=args.batch_size, strategy=args.strategy, threshold=args.threshold,
                detect_max_side=args.detect_max_side, min_face_size=args.min_face, thresholds=args.thresholds,
                crop_scale=args.crop_scale)
        except (FileNotFoundError, ValueError) as e:
            return fail(e)
        for raw in args.inputs:
            if Path(raw).is_dir() and not folder_items(Path(raw)):
                print(f"warning: {raw}: no videos in this folder", file=sys.stderr)
        paths = expand_inputs(args.inputs)
        total = len(paths)
        for record in detector.iter_predictions(paths, args.annotate, progress=not args.quiet):
            records.append(record)
    except KeyboardInterrupt:
        return interrupted(_kept(records, total, args.out), tool_command("predict.py", argv))
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


__all__ = ["Detector", "NonFiniteOutput", "clip_tensor", "expand_inputs", "model_geometry", "predict_main",
           "write_strip"]
