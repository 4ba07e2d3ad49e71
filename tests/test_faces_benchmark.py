"""The ``faces`` benchmark (tools/benchmark.py faces): recall and IoU against naive full-resolution MTCNN."""
import json

import numpy as np
import pytest

from deepfake_ssat.bench.faces import GOALS, best_face, format_faces, run_faces_benchmark, score_video
from deepfake_ssat.bench.header import HEADER_KEYS
from deepfake_ssat.commands.benchmark import main as benchmark_main

VIDEO_KEYS = {"name", "width", "height", "face", "decode_seconds", "ours_seconds", "naive_seconds",
              "speedup_vs_naive", "mean_iou_vs_naive", "recall", "recall_every_face", "time_over_decode",
              "frames_with_face_ours", "frames_with_face_naive", "frames_counted", "frames_matched", "faces_naive",
              "faces_matched", "missed_frames"}


def _crops(*frame_boxes):
    return {"crops": [{"frame": f, "box": list(b)} for f, b in frame_boxes]}


def test_score_video_counts_the_largest_naive_face_and_every_face():
    """The best face is the largest naive face; a miss counts 0 in the IoU; every naive face is matched against
    the keep='all' crops."""
    big, small = np.array([0, 0, 100, 100.]), np.array([200, 0, 250, 50.])
    naive = [np.stack([small, big]), np.stack([big]), np.zeros((0, 4)), np.stack([big, small])]
    assert (best_face(naive[0]) == big).all() and best_face(naive[2]) is None
    ours = _crops((0, big), (1, small), (3, big + [0, 0, 10, 0]))   # frame 1: only the wrong (small) box
    every = _crops((0, big), (0, small), (1, small), (3, big), (5, small))
    score = score_video(naive, ours, every, [0, 1, 2, 3])
    assert score["frames_counted"] == score["frames_with_face_naive"] == 3
    assert score["frames_matched"] == 2 and score["missed_frames"] == [1]
    assert score["iou_sum"] == pytest.approx(1 + 0 + 100 / 110)
    assert (score["faces_naive"], score["faces_matched"]) == (5, 3)  # frame 1: big missed; frame 3: small missed
    assert score["frames_with_face_ours"] == 3


def test_faces_benchmark_reports_recall_against_naive(capsys):
    result = run_faces_benchmark(["large_moving_1080p", "two_people_1080p"], num_frames=6, frames=3, repeats=1,
                                 command="test")
    result = json.loads(json.dumps(result))  # JSON-able
    for key in ("benchmark", "device", "torch_threads", "params", "timing", "command", "videos", "goals"):
        assert key in result
    assert set(HEADER_KEYS) <= set(result)
    assert result["benchmark"] == "faces" and result["command"] == "test" and result["sampled_frames"] == 3
    assert result["params"]["keep"] == "largest" and result["params"]["sampling"]["frames"] == 3
    videos = {v["name"]: v for v in result["videos"]}
    assert list(videos) == ["large_moving_1080p", "two_people_1080p"]
    for v in videos.values():
        assert set(v) == VIDEO_KEYS
        assert (v["width"], v["height"]) == (1920, 1080) and isinstance(v["face"], str)
        assert v["frames_with_face_naive"] == v["frames_counted"] == 3
        for key in ("recall", "recall_every_face", "mean_iou_vs_naive"):
            assert isinstance(v[key], float) and 0 <= v[key] <= 1
        assert v["recall"] == pytest.approx(v["frames_matched"] / 3, abs=1e-4)
        assert v["recall_every_face"] == pytest.approx(v["faces_matched"] / v["faces_naive"], abs=1e-4)
        assert all(v[k] > 0 for k in ("decode_seconds", "ours_seconds", "naive_seconds", "speedup_vs_naive",
                                      "time_over_decode"))
    # the naive detector sees one face per frame, then both people: recall_every_face counts both
    assert videos["large_moving_1080p"]["faces_naive"] == 3 and videos["two_people_1080p"]["faces_naive"] == 6
    assert "hopper" in videos["two_people_1080p"]["face"] and "astronaut" in videos["two_people_1080p"]["face"]
    assert result["faces_naive"] == 9 and result["frames_counted"] == 6
    assert result["recall_every_face"] == pytest.approx(sum(v["faces_matched"] for v in videos.values()) / 9,
                                                        abs=1e-4)
    assert result["recall"] == pytest.approx(sum(v["frames_matched"] for v in videos.values()) / 6, abs=1e-4)
    worst = min(videos.values(), key=lambda v: v["recall"])
    assert (result["recall_worst_video"], result["recall_worst_video_name"]) == (worst["recall"], worst["name"])
    assert result["speedup_vs_naive"] == pytest.approx(result["naive_seconds"] / result["ours_seconds"], rel=0.02)
    assert set(result["goals"]) == set(GOALS) == {"recall", "recall_worst_video", "speedup_vs_naive",
                                                  "mean_iou_vs_naive", "time_over_decode"}
    for key, goal in result["goals"].items():
        assert set(goal) == {"value", "goal", "met"} and goal["value"] == result[key]
        assert isinstance(goal["met"], bool) and goal["goal"] in (">= 0.97", ">= 0.8", ">= 4", "<= 2")
        op, target = goal["goal"].split()
        assert goal["met"] == (goal["value"] >= float(target) if op == ">=" else goal["value"] <= float(target))
    assert result["goals"]["recall"]["goal"] == ">= 0.97" and result["goals"]["time_over_decode"]["goal"] == "<= 2"
    text = format_faces(result)
    assert "recall" in text and "two_people_1080p" in text

    assert benchmark_main(["faces", "--scenes", "large_moving_1080p,nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'nope'" in err[0] and "two_people_1080p" in err[0]
