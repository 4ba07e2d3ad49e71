"""Face extraction under real conditions (issue 22): small, dim faces in 1080p; what was lost, said per run."""
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage import data

from deepfake_ssat.faces.inputs import discover
from deepfake_ssat.faces.detect import smallest_face
from deepfake_ssat.faces.extract import ExtractionParams, run_batch
from deepfake_ssat.faces.sampling import SamplingPolicy, uniform_indices
from deepfake_ssat.synthetic.scenes import REAL_CONDITIONS, FacePath, write_face_video
from deepfake_ssat.faces.video import open_video

FRAMES = 8


def _old_default_hits(path, indices) -> int:
    """Frames where the extractor's defaults before this issue found a face: facenet-pytorch's MTCNN on frames
    downscaled to a 640-px longer side, smallest face 40 px there, thresholds 0.85 / 0.95 / 0.95."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=40, thresholds=[0.85, 0.95, 0.95], post_process=False)
    with open_video(path, "decord") as video:
        frames = video.read(indices)
    small = np.stack([cv2.resize(f, (640, 360), interpolation=cv2.INTER_AREA) for f in frames])
    boxes, _ = mtcnn.detect(small)
    return sum(b is not None and len(b) > 0 for b in boxes)


@pytest.fixture(scope="module")
def dim_1080p(tmp_path_factory):
    root = tmp_path_factory.mktemp("dim")
    REAL_CONDITIONS["dim_small_1080p"].write(root / "dim_small_1080p.mp4", 24)
    return root


def test_small_dim_1080p_face_is_kept_where_the_old_defaults_lost_it(dim_1080p, tmp_path):
    video = dim_1080p / "dim_small_1080p.mp4"
    assert _old_default_hits(video, uniform_indices(24, FRAMES)) < FRAMES / 2
    summary = run_batch(discover([video]), tmp_path, ExtractionParams(SamplingPolicy(frames=FRAMES)), progress=False)
    record = summary["videos"][0]
    assert record["status"] == "ok" and record["face_share"] >= 0.9, record
    assert summary["frames_with_face"] == {"mean": record["face_share"], "videos_under_half": {}}
    manifest = json.loads((tmp_path / record["key"] / "manifest.json").read_text())
    widths = [c["box"][2] - c["box"][0] for c in manifest["crops"]]
    assert 50 < np.median(widths) < 85  # the 64-px face, not something else
    assert smallest_face(1920, 1080, 20, 0.05) == 54 and smallest_face(320, 240, 20, 0.05) == 20


def test_a_video_mostly_without_a_face_is_named_and_counted(tmp_path, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_face_video(clips / "leaves.mp4", 320, 240, 16, [FacePath(10, 5, 0.5, 900, 5, 0.5)])  # gone after ~1/4
    write_face_video(clips / "stays.mp4", 320, 240, 16, [FacePath(10, 5, 0.5, 80, 40, 0.6)])
    params = ExtractionParams(SamplingPolicy(frames=FRAMES), store="png")
    summary = run_batch(discover([clips]), tmp_path / "out", params, progress=False)
    shares = {v["key"]: v["face_share"] for v in summary["videos"]}
    assert shares["clips/stays"] == 1 and shares["clips/leaves"] < 0.5
    assert summary["frames_with_face"]["videos_under_half"] == {"clips/leaves": shares["clips/leaves"]}
    assert summary["frames_with_face"]["mean"] == pytest.approx(np.mean(list(shares.values())), abs=1e-4)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "clips/leaves" in warnings[0] and f"{shares['clips/leaves']:.0%}" in warnings[0]

    # a rerun skips both and still reports the shares; other parameters redo them and say so
    again = run_batch(discover([clips]), tmp_path / "out", params, progress=False)
    assert [v["skipped"] for v in again["videos"]] == [True, True] and again["frames_with_face"] == \
        summary["frames_with_face"] and again["redone"] == 0
    capsys.readouterr()
    redo = run_batch(discover([clips]), tmp_path / "out", replace(params, thresholds=(0.7, 0.8, 0.9)), progress=False)
    assert redo["redone"] == 2 and not any(v["skipped"] for v in redo["videos"])
    assert "2 videos had been extracted with other parameters" in capsys.readouterr().err


def test_no_face_reason_names_the_size_searched_and_the_likeliest_candidate(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_face_video(clips / "far.mp4", 640, 360, 8, [FacePath(300, 150, 0.25)])  # a ~22-px face
    params = ExtractionParams(SamplingPolicy(frames=4), min_face_size=80, store="png")
    record = run_batch(discover([clips]), tmp_path / "out", params, progress=False)["videos"][0]
    assert record["status"] == "no_face" and record["face_share"] == 0
    assert "no face found in 4 sampled frames (faces of 80 px and up searched" in record["reason"]
    found = run_batch(discover([clips]), tmp_path / "out2", replace(params, min_face_size=12), progress=False)
    assert found["videos"][0]["status"] == "ok"  # it was too small for the search, not missing
    write_face_video(clips / "room.mp4", 320, 240, 4, background=data.coffee())  # no face, many candidates
    loose = replace(params, min_face_size=20, thresholds=(0.3, 0.3, 0.9))
    record = run_batch(discover([clips / "room.mp4"]), tmp_path / "out3", loose, progress=False)["videos"][0]
    assert record["status"] == "no_face"
    assert "; the likeliest candidate, " in record["reason"] and "below the threshold 0.9)" in record["reason"]


def test_a_checkpoint_of_an_older_store_gets_todays_face_sizes():
    from deepfake_ssat.inference.detector import training_params

    older = {"detect_max_side": 640, "min_face_size": 40, "thresholds": [0.85, 0.95, 0.95], "crop_scale": 1.3,
             "crop_size": 224, "image_format": "jpg", "store": "tar"}
    face = training_params(older, "old.pt")
    assert "min_face_size" not in face and "detect_max_side" not in face  # 40 px of a 640-px frame: not today's
    assert face["thresholds"] == (0.85, 0.95, 0.95) and face["crop_scale"] == 1.3
    params = ExtractionParams(**face)
    assert (params.min_face_size, params.min_face_fraction) == (20, 0.05)
    today = training_params(ExtractionParams(min_face_fraction=0.04, min_face_size=30).to_dict(), "new.pt")
    assert (today["min_face_fraction"], today["min_face_size"]) == (0.04, 30)


def test_predict_gives_a_verdict_on_the_small_dim_1080p_face(dim_1080p, tmp_path):
    import torch

    from deepfake_ssat.config import config_to_dict, load_config
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.checkpoint import save_checkpoint
    from deepfake_ssat.inference import Detector

    cfg = load_config("video/tiny/dfdc_videomae_scratch")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "best.pt", {"model": build_model(cfg, 2).state_dict(), "config": config_to_dict(cfg),
                                           "meta": {"epoch": 0}})
    record = Detector.from_checkpoint(tmp_path / "best.pt", "cpu").predict_video(dim_1080p / "dim_small_1080p.mp4")
    assert record["status"] == "ok" and record["label"] in ("FAKE", "REAL"), record
    assert 0 <= record["fake_probability"] <= 1 and record["num_faces"] >= 8
    assert "no face in" not in (record["reason"] or "")  # a face in every sampled frame
    widths = [b[2] - b[0] for b in record["boxes"]]
    assert 50 < np.median(widths) < 85
