"""The video detector: decode -> detect faces -> face tracks -> face clips -> encoder -> fake probability.

The training pipeline done in memory: frames sampled as ``dfssat-extract-faces --clips K --clip-len T
--stride s`` samples them, faces found and tracked by the same code, crops resized as the extraction
stores them and then as :class:`~deepfake_ssat.data.faceclips.FaceClipDataset` reads them at
evaluation, so clips ``[N, 3, T, S, S]`` match the training input exactly; clip probabilities [N] -> one score
per face track, and the video's score is the highest track's (a fake face among real ones decides).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..config import Config
from ..data.transforms import centre_resize, clip_positions, clip_tensor, resized_crop
from ..runtime import amp_dtype, autocast, resolve_device
from ..metrics import STRATEGIES, aggregate
from ..faces.inputs import folder_items
from ..faces.detect import FaceDetector, FrameFaces, Track, link_tracks, main_track, square_crop_box
from ..faces.extract import ExtractionParams, no_face_reason
from ..faces.video import VideoFailure, open_video
from ..faces.sampling import SamplingPolicy
from ..faces.store import FORMATS, as_stored, store_format
from ..models.encoder import Encoder
from ..io import first_line
from .annotate import write_strip


def check_min_track_frames(value: int | None) -> int | None:
    """``value`` if it is None or an integer >= 1; ValueError (one line) otherwise."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValueError(f"min_track_frames must be an integer >= 1 (or None: the model's num_frames), got {value!r}")
    return None if value is None else int(value)


class NonFiniteOutput(ValueError):
    """The model gave NaN / inf logits (broken or corrupted weights): no probability can be given."""


def _nonfinite_reason(n_nan: int, n_inf: int, total: int) -> str:
    """One line: how many of ``total`` clips had NaN / inf logits, and the likely cause."""
    kinds = " and ".join(k for k, n in (("NaN", n_nan), ("inf", n_inf)) if n)
    return (f"model output is not finite ({kinds}) for {n_nan + n_inf} of {total} clips; "
            f"the checkpoint's weights may be corrupted")


def model_geometry(encoder: Encoder, cfg: Config) -> tuple[int, int]:
    """``(img_size, num_frames)`` of a video encoder; ValueError for an image encoder."""
    if encoder.num_frames is None:
        raise ValueError(f"model {cfg.model.name!r} is not a video model (no num_frames); "
                         f"inference needs a face-clip checkpoint")
    return int(encoder.img_size), int(encoder.num_frames)


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Video paths of ``inputs``: a folder means every video under it (recursive), anything else itself
    (a missing path is kept, and reported as ``missing`` by :meth:`Detector.predict_video`)."""
    paths: list[Path] = []
    for raw in inputs:
        path = Path(raw)
        paths += [item.path for item in folder_items(path)] if path.is_dir() else [path]
    return paths


_FACE_INTS = ("min_face_size", "crop_size")


def training_params(extraction: dict | None, source: str | Path) -> dict:
    """:class:`ExtractionParams` fields (face detector settings, ``crop_scale``, ``crop_size``, ``store``) from the
    extraction parameters a checkpoint records (:func:`~deepfake_ssat.engine.weights.training_extraction`; those
    present), for cropping faces as the training data was. Unknown (None): lossless crops, ``store="png"``.
    ValueError naming ``source`` and the key for a value of the wrong type."""
    if extraction is None:
        return {"store": "png"}
    face: dict = {}
    older = "detect_max_side" in extraction  # sizes in pixels of downscaled frames: not today's min_face_size
    for key in (*_FACE_INTS, "crop_scale", "min_face_fraction", "thresholds"):
        if key not in extraction or (older and key == "min_face_size"):
            continue
        value = extraction[key]
        if key in _FACE_INTS:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif key in ("crop_scale", "min_face_fraction"):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        else:
            ok = isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)
            value = tuple(value) if ok else value
        if not ok:
            raise ValueError(f"{source}: extraction parameter {key}={value!r} in the checkpoint is not valid")
        face[key] = value
    store = store_format(extraction)
    if store not in FORMATS:
        raise ValueError(f"{source}: extraction parameter store={store!r} in the checkpoint is not one of {FORMATS}")
    return {**face, "store": store}


class Detector:
    """A face-clip classifier and its face pipeline: video file -> fake probability.

    ``encoder(x [B, 3, T, S, S]) -> logits [B, 2]``, class 1 = fake, with ``S = img_size`` and
    ``T = num_frames``. ``params.sampling`` must be clip mode with ``clip_len == num_frames``;
    ``params.crop_size`` is the side the crops are first resized to (the extraction's ``--size``),
    then resized to ``img_size`` as the training dataset does when the two differ; in between, each crop
    is encoded as ``params.store`` keeps it (:func:`~deepfake_ssat.faces.store.as_stored`: JPEG quality 95
    for ``tar`` / ``jpg``; ``params=None``: lossless), so that the model sees the crops it was trained on.

    Every face track with a face in at least ``min_track_frames`` sampled frames (None: ``num_frames``, one
    clip's worth) is scored, each on its own clips, and the main track (most persistent, then largest) always
    is, however short (``params.keep`` does not apply). The video's probability is the **maximum** over the
    scored tracks' probabilities: one swapped face of two people is the video's verdict, a real face beside it
    cannot dilute it. (The DFDC winner instead pools every face's frame predictions into one "confident
    strategy" score; with one fake of two people that pooled mean drifts toward the real face's score.)
    """

    def __init__(self, encoder: Encoder, img_size: int, num_frames: int, device: str | torch.device = "cpu",
                 params: ExtractionParams | None = None, batch_size: int = 8, strategy: str = "mean",
                 threshold: float = 0.5, min_track_frames: int | None = None) -> None:
        self.min_track_frames = check_min_track_frames(min_track_frames)
        self.device = torch.device(device)
        self.encoder = encoder.eval().to(self.device)
        self.img_size, self.num_frames = img_size, num_frames
        self.params = params or ExtractionParams(SamplingPolicy(clips=4, clip_len=num_frames, stride=2),
                                                 crop_size=img_size, store="png")
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
                        threshold: float = 0.5, min_track_frames: int | None = None, **extraction) -> "Detector":
        """A detector from a training checkpoint or an exported detector (decoder weights are not needed).

        Faces are found and cropped as for the model's training data: the face detector settings, crop scale,
        crop size and store format that the checkpoint records (:func:`training_params`; a checkpoint without
        them: the defaults, crops of the model's ``img_size``, lossless). ``clips`` x model ``num_frames`` frames
        ``stride`` apart are sampled per video; ``crop_size`` and ``extraction`` (other :class:`ExtractionParams`
        fields: ``min_face_fraction``, ``min_face_size``, ``thresholds``, ``crop_scale``, ``store``) override.
        A checkpoint of a store extracted before the full-resolution detector records ``detect_max_side`` and a
        ``min_face_size`` in pixels of its downscaled frames: those two are not used (today's detector and sizes are).
        ``min_track_frames``: which face tracks are scored (:class:`Detector`).
        Raises FileNotFoundError / ValueError for a missing or unusable checkpoint.
        """
        from ..engine.weights import inference_model, read_inference_checkpoint, training_extraction

        if clips < 1:
            raise ValueError(f"clips must be >= 1, got {clips}")
        check_min_track_frames(min_track_frames)  # before the checkpoint loads
        torch_device = resolve_device(device)
        ckpt = read_inference_checkpoint(path, "cpu")
        encoder, cfg = inference_model(ckpt, path)
        if encoder.num_classes != 2:
            raise ValueError(f"{path}: the head has {encoder.num_classes} classes; a real/fake detector needs 2")
        img_size, num_frames = model_geometry(encoder, cfg)
        face = {"crop_size": img_size, **training_params(training_extraction(ckpt, path), path), **extraction}
        if crop_size:
            face["crop_size"] = crop_size
        params = ExtractionParams(SamplingPolicy(clips=clips, clip_len=num_frames, stride=stride), **face)
        return cls(encoder, img_size, num_frames, torch_device, params, batch_size, strategy, threshold,
                   min_track_frames)

    # ------------------------------------------------------------------------------------------ API

    def predict_video(self, path: str | Path, annotate: str | Path | None = None) -> dict:
        """The prediction record of one video; never raises for a bad video.

        ``path``, ``status`` (ok | no_face | unreadable | missing | error), ``reason`` (one line or None),
        ``fake_probability`` and ``label`` (FAKE / REAL; None unless ok: the highest scored track's),
        ``tracks`` (one object per scored face track: ``track`` id, ``num_faces``, ``frames``, ``boxes``,
        ``per_clip``, ``num_clips``, ``fake_probability``, ``label``), ``decided_by`` (the id of the track whose
        probability is the video's; None unless ok), and that track's ``num_faces``, ``num_clips``, ``per_clip``
        (fake probability of each clip), ``frames`` (frame indices of the crops used) and ``boxes`` (their face
        boxes x1, y1, x2, y2 in frame pixels); ``annotation`` (PNG path or None) and ``seconds``. NaN / inf model
        output (e.g. corrupted weights) gives status ``error`` with no score: never a verdict computed from NaN.

        ``annotate``: write a PNG strip of a few sampled frames with every scored face's box and probability.
        """
        start = time.perf_counter()
        record = {"path": str(path), "status": "ok", "reason": None, "fake_probability": None, "label": None,
                  "num_faces": 0, "num_clips": 0, "per_clip": [], "frames": [], "boxes": [], "tracks": [],
                  "decided_by": None, "annotation": None}
        try:
            record.update(self._predict(Path(path), Path(annotate) if annotate else None))
        except VideoFailure as e:
            record.update(status=e.status, reason=e.reason)
        except NonFiniteOutput as e:  # a NaN score must never become a verdict
            record.update(status="error", reason=str(e))
        except Exception as e:  # one broken video never stops a batch
            record.update(status="error", reason=f"{path}: {type(e).__name__}: {first_line(e)}")
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
        crop = resized_crop(frame[None], self.params.crop_size, (x1, y1, x2 - x1, y2 - y1), flip=False)[0]
        return centre_resize(as_stored(crop, self.params.store)[None], self.img_size)[0]

    def scored_tracks(self, tracks: list[Track], faces: list[FrameFaces]) -> list[Track]:
        """The tracks :meth:`_predict` scores, in id order: each with a face in >= ``min_track_frames`` sampled
        frames (None: the model's ``num_frames``), and the main track whatever its length."""
        main = main_track(tracks, faces)
        least = self.min_track_frames or self.num_frames
        return [t for t in tracks if t is main or len(t.members) >= least]

    def track_clips(self, track: Track, frames: list[np.ndarray], faces: list[FrameFaces], indices: list[int],
                    clip_lists: list[list[int]]) -> tuple[list[torch.Tensor], int]:
        """The clips ``[3, T, S, S]`` of one face track (one per sampled clip where it has a face; a clip with
        fewer than T faces repeats them as the training dataset does) and how many of them were padded."""
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
        return clips, padded

    def _predict(self, path: Path, annotate: Path | None) -> dict:
        with open_video(path, self.params.video_backend) as video:
            num_frames = len(video)
            clip_lists = self.params.sampling.clip_lists(num_frames)
            indices = sorted({i for clip in clip_lists for i in clip})
            frames = video.read(indices)
        faces = self.faces.detect(frames)
        tracks = link_tracks(faces)
        main = main_track(tracks, faces)
        if main is None:
            if annotate is not None:
                write_strip(annotate, frames, indices, faces, None, "no face")
            return {"status": "no_face", "reason": no_face_reason(len(indices), self.faces, frames[0]),
                    "annotation": str(annotate) if annotate is not None else None}

        scored = self.scored_tracks(tracks, faces)
        built = [self.track_clips(track, frames, faces, indices, clip_lists) for track in scored]
        probs = self.score_clips(torch.stack([clip for clips, _ in built for clip in clips]))  # one pass, all faces
        bounds = np.cumsum([0] + [len(clips) for clips, _ in built])
        results = []
        for track, lo, hi in zip(scored, bounds[:-1], bounds[1:]):
            per_clip = probs[lo:hi]
            probability = aggregate(per_clip, self.strategy)
            used = sorted(track.members)
            results.append({"track": track.id, "num_faces": len(used), "frames": [indices[p] for p in used],
                            "boxes": [[round(float(v), 2) for v in faces[p].boxes[track.members[p]]] for p in used],
                            "per_clip": per_clip.tolist(), "num_clips": int(hi - lo),
                            "fake_probability": probability,
                            "label": "FAKE" if probability >= self.threshold else "REAL"})
        # the highest track decides; on a tie, the main track (a single face behaves exactly as before)
        best = max(range(len(scored)), key=lambda k: (results[k]["fake_probability"], scored[k] is main))
        decided = results[best]
        if annotate is not None:
            write_strip(annotate, frames, indices, faces,
                        [(t, r["fake_probability"], r["label"]) for t, r in zip(scored, results)],
                        f"{decided['label']} {decided['fake_probability']:.3f}")
        reason = self._notes(num_frames, len(clip_lists), len(indices), decided["num_faces"], built[best][1],
                             decided["num_clips"])
        return {"reason": reason, **{k: decided[k] for k in ("fake_probability", "label", "num_faces", "num_clips",
                                                              "per_clip", "frames", "boxes")},
                "tracks": results, "decided_by": decided["track"],
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
