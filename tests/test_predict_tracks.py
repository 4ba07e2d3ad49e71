"""Every face track scored at inference: a fake second person decides the video (max over tracks), issue 22."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from test_predict import CROP, IMG, T
from test_predict_safety import one_line

from deepfake_ssat.commands.predict import main as predict_main
from deepfake_ssat.data.transforms import clip_tensor
from deepfake_ssat.faces.detect import FrameFaces, link_tracks
from deepfake_ssat.faces.extract import ExtractionParams
from deepfake_ssat.faces.sampling import SamplingPolicy
from deepfake_ssat.synthetic.scenes import MANIPULATIONS, FacePath, render_frame, write_face_video
from deepfake_ssat.inference import Detector
from deepfake_ssat.metrics import aggregate

W, H = 640, 360
# two astronauts side by side, the left one (larger: the main track) real, the right one face-swapped (Grace Hopper)
REAL = FacePath.face("astronaut", 90, 170, 150, move=(20, 0))
SWAP = FacePath.face("astronaut", 76, 470, 160, move=(-15, 0), manipulation=MANIPULATIONS["FaceSwap"])
PARAMS = ExtractionParams(SamplingPolicy(clips=4, clip_len=T, stride=2), min_face_size=20, crop_size=CROP, store="png")


class TemplateEncoder(torch.nn.Module):
    """A stand-in model that judges content: the fake logit is the clip's mean squared distance (normalised
    pixels) from a real astronaut face crop, minus ``MARGIN``. Measured: real astronaut clips ~0.06 from the
    template, the Hopper-swapped face ~0.37; nothing tells it which track is which."""
    num_classes, img_size, num_frames = 2, IMG, T
    MARGIN, GAIN = 0.2, 20.0

    def __init__(self, template: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("template", template)  # [3, S, S]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T, S, S] -> [B, 2]
        distance = (x - self.template[:, None]).pow(2).mean(dim=(1, 2, 3, 4))
        return torch.stack([torch.zeros_like(distance), self.GAIN * (distance - self.MARGIN)], dim=1)


def _detector(**kwargs) -> Detector:
    """A detector whose template is cropped (by its own face pipeline) from a reference frame of one real
    astronaut of another size at another place: not a frame of the test video."""
    encoder = TemplateEncoder(torch.zeros(3, IMG, IMG))
    detector = Detector(encoder, IMG, T, "cpu", PARAMS, **kwargs)
    reference = render_frame(W, H, [FacePath.face("astronaut", 84, 320, 160)], 0.0)
    [faces] = detector.faces.detect([reference])
    assert len(faces) == 1
    encoder.template.copy_(clip_tensor(detector.face_crop(reference, faces.boxes[0])[None])[:, 0])
    return detector


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """The two-person video, its record (default detector, with an annotation strip) and the detector."""
    root = tmp_path_factory.mktemp("two_people")
    write_face_video(root / "two.mp4", W, H, 40, [REAL, SWAP])
    detector = _detector()
    record = detector.predict_video(root / "two.mp4", annotate=root / "two.png")
    return root / "two.mp4", record, detector


def _side(track: dict) -> str:
    centres = [(box[0] + box[2]) / 2 for box in track["boxes"]]
    return "left" if np.mean(centres) < W / 2 else "right"


def test_the_fake_second_person_decides_the_video(two_people):
    _, record, _ = two_people
    assert record["status"] == "ok", record
    tracks = {_side(t): t for t in record["tracks"]}
    assert len(record["tracks"]) == 2 and set(tracks) == {"left", "right"}
    real, fake = tracks["left"], tracks["right"]
    for track in (real, fake):
        assert track["num_faces"] == len(track["frames"]) == len(track["boxes"]) == 24
        assert track["num_clips"] == len(track["per_clip"]) == 4
        assert track["fake_probability"] == pytest.approx(float(np.mean(track["per_clip"])), abs=1e-12)
    assert real["label"] == "REAL" and fake["label"] == "FAKE"
    assert fake["fake_probability"] > 0.9 > 0.1 > real["fake_probability"]
    assert record["decided_by"] == fake["track"] != real["track"]
    assert record["fake_probability"] == fake["fake_probability"] and record["label"] == "FAKE"
    for key in ("per_clip", "frames", "boxes", "num_faces", "num_clips"):  # old consumers read the deciding track
        assert record[key] == fake[key]
    # why the max and not one pooled score over every face's clips (the DFDC winner's way): the real face
    # pulls the pooled score down, here below the threshold
    pooled = real["per_clip"] + fake["per_clip"]
    assert aggregate(pooled, "mean") < 0.6 < record["fake_probability"]
    assert aggregate(pooled, "confident") < record["fake_probability"]


def test_the_strip_marks_every_scored_face(two_people):
    _, record, _ = two_people
    strip = cv2.imread(record["annotation"])  # BGR
    tile = round(W * 240 / H)
    assert strip.shape == (240, 4 * tile, 3)
    x = np.arange(strip.shape[1]) % tile
    for colour, side in (((0, 0, 255), "right"), ((0, 200, 0), "left")):  # red FAKE box, green REAL box
        _, cols = np.nonzero(np.all(strip == colour, axis=2))
        assert len(cols) > 4 * 100, (colour, len(cols))  # a box outline (and its number) on each of the 4 tiles
        on_right = x[cols] > tile / 2
        assert (on_right.mean() if side == "right" else 1 - on_right.mean()) > 0.98


def test_min_track_frames_above_the_second_track_scores_the_main_track_only(two_people):
    video, _, _ = two_people
    record = _detector(min_track_frames=25).predict_video(video)  # both tracks have 24 faces; main is kept
    # the main track (the larger face) is the real one: scoring it alone, as before, misses the fake
    assert record["status"] == "ok" and len(record["tracks"]) == 1
    [track] = record["tracks"]
    assert _side(track) == "left" and record["decided_by"] == track["track"]
    assert record["label"] == "REAL" and record["fake_probability"] == track["fake_probability"]


def _faces(*boxes) -> FrameFaces:
    b = np.array(boxes, np.float32).reshape(-1, 4)
    return FrameFaces(b, np.ones(len(b), np.float32), np.zeros((len(b), 5, 2), np.float32))


def test_which_tracks_are_scored(two_people):
    """Default: tracks with a face in >= num_frames sampled frames; the main track always, however short."""
    _, _, detector = two_people
    big, small = [0, 0, 100, 100], [300, 300, 340, 340]
    faces = [_faces(big, small), _faces(big, small), _faces(big), _faces()]
    tracks = link_tracks(faces)
    assert sorted(len(t.members) for t in tracks) == [2, 3]
    assert [len(t.members) for t in detector.scored_tracks(tracks, faces)] == [3]  # < T = 8 frames: main only
    for least, lengths in ((2, [3, 2]), (3, [3]), (1, [3, 2])):
        detector.min_track_frames = least
        assert [len(t.members) for t in detector.scored_tracks(tracks, faces)] == lengths
    detector.min_track_frames = None


def test_a_bad_min_track_frames_is_one_clear_error(tmp_path, capsys):
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=r"^min_track_frames must be an integer >= 1 .*got "):
            Detector(TemplateEncoder(torch.zeros(3, IMG, IMG)), IMG, T, "cpu", PARAMS, min_track_frames=bad)
    with pytest.raises(ValueError, match="min_track_frames"):  # checked before the checkpoint is read
        Detector.from_checkpoint(tmp_path / "missing.pt", "cpu", min_track_frames=0)
    video = tmp_path / "v.mp4"
    assert predict_main([str(video), "--checkpoint", str(tmp_path / "missing.pt"), "--min-track-frames", "0"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and one_line(err) == "error: --min-track-frames must be >= 1, got 0"


def test_help_names_the_option():
    from deepfake_ssat.commands.predict import build_parser

    text = build_parser().format_help()
    assert "--min-track-frames" in text and "decided_by" in text
