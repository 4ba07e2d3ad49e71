"""Metrics, video aggregation, streaming accumulation and the results writers (deepfake_ssat.eval)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from deepfake_ssat.eval import (
    StreamingMetrics,
    aggregate,
    binary_metrics,
    confident_strategy,
    equal_error_rate,
    results_table,
    roc_png,
    write_predictions_csv,
    write_results,
)


def test_binary_metrics_hand_computed_exact_eer_crossing():
    # reals: .1 .2 .3 .6 ; fakes: .4 .7 .8 .9 ; fake iff prob >= 0.5
    # real: .6 wrong -> acc_real 3/4 ; fake: .4 wrong -> acc_fake 3/4 ; acc 6/8 = 75 %
    # AUC = P(fake > real): .4 beats 3 reals, .7/.8/.9 beat all 4 -> (3 + 12) / 16 = 0.9375
    # AP: ranking F F F R F R R R -> precision at each fake = 1, 1, 1, 4/5 -> mean = 0.95
    # ROC at threshold .6: FPR = 1/4, TPR = 3/4 -> FNR = 1/4 = FPR: exact crossing, EER = 0.25
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    probs = [0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9]
    m = binary_metrics(labels, probs)
    assert m["acc"] == pytest.approx(75.0)
    assert m["acc_real"] == pytest.approx(75.0)
    assert m["acc_fake"] == pytest.approx(75.0)
    assert m["auc"] == pytest.approx(0.9375)
    assert m["ap"] == pytest.approx(0.95)
    assert m["eer"] == pytest.approx(0.25)
    assert (m["n"], m["n_real"], m["n_fake"]) == (8, 4, 4)
    # tensors give the same numbers
    assert binary_metrics(torch.tensor(labels), torch.tensor(probs)) == pytest.approx(m)


def test_binary_metrics_hand_computed_interpolated_eer():
    # reals: .2 .5 ; fakes: .5 .9 (a real/fake tie at .5) ; .5 counts as fake
    # acc_real 1/2 = 50 %, acc_fake 2/2 = 100 %, acc 3/4 = 75 %
    # AUC: .9 beats both reals (2), .5 beats .2 (1) and ties .5 (1/2) -> 3.5 / 4 = 0.875
    # AP: threshold .9 -> P 1, R 1/2 ; threshold .5 -> P 2/3, R 1 -> 1/2 * 1 + 1/2 * 2/3 = 5/6
    # ROC points (FPR, TPR): (0, 0) (0, 1/2) (1/2, 1) (1, 1); FPR = FNR at no point:
    # on the segment (0, 1/2) -> (1/2, 1), FPR = s/2 and FNR = 1/2 - s/2 meet at s = 1/2 -> EER = 0.25
    # (taking the point nearest FPR = FNR would give 0 or 0.5)
    m = binary_metrics([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9])
    assert (m["acc"], m["acc_real"], m["acc_fake"]) == pytest.approx((75.0, 50.0, 100.0))
    assert m["auc"] == pytest.approx(0.875)
    assert m["ap"] == pytest.approx(5 / 6)
    assert m["eer"] == pytest.approx(0.25)
    # a vertical ROC segment: FPR stays 1/3 while FNR falls from 1/2 to 0 -> EER = 1/3
    assert equal_error_rate([0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.6, 0.9]) == pytest.approx(1 / 3)
    # perfect separation
    assert equal_error_rate([0, 1], [0.1, 0.9]) == 0.0


def test_binary_metrics_single_class_and_bad_input():
    m = binary_metrics([1, 1, 1], [0.9, 0.2, 0.7])
    assert m["auc"] is None and m["ap"] is None and m["eer"] is None
    assert m["acc"] == pytest.approx(200 / 3) and m["acc_fake"] == pytest.approx(200 / 3)
    assert m["acc_real"] is None and (m["n_real"], m["n_fake"]) == (0, 3)
    m = binary_metrics([0, 0], [0.1, 0.7])
    assert m["auc"] is None and m["acc_real"] == pytest.approx(50.0) and m["acc_fake"] is None
    with pytest.raises(ValueError, match="logits"):
        binary_metrics([0, 1], [-2.0, 3.0])
    with pytest.raises(ValueError, match="0 \\(real\\) or 1"):
        binary_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="no samples"):
        binary_metrics([], [])


def test_confident_strategy_branches():
    # > n/2.5 and > 11 above 0.8 -> mean of those above
    assert confident_strategy([0.9] * 12 + [0.1] * 8) == pytest.approx(0.9)
    # n = 40: 17 > 16 confident -> their mean; 16 is not > 40/2.5 -> plain mean
    assert confident_strategy([0.9] * 17 + [0.5] * 23) == pytest.approx(0.9)
    assert confident_strategy([0.9] * 16 + [0.5] * 24) == pytest.approx((16 * 0.9 + 24 * 0.5) / 40)
    # few frames: 11 of 12 above t is > n/2.5 but not > 11 -> plain mean, not 0.9
    assert confident_strategy([0.9] * 11 + [0.1]) == pytest.approx((11 * 0.9 + 0.1) / 12)
    # > 90 % below 0.2 -> mean of those below; exactly 90 % is not enough -> plain mean
    assert confident_strategy([0.1] * 19 + [0.6]) == pytest.approx(0.1)
    assert confident_strategy([0.1] * 18 + [0.6] * 2) == pytest.approx((18 * 0.1 + 2 * 0.6) / 20)
    # thresholds are strict: 0.8 is not "above 0.8"
    assert confident_strategy([0.8] * 20 + [0.0] * 5) == pytest.approx(16 / 25)
    assert aggregate([0.9] * 12 + [0.1] * 8, "confident") == pytest.approx(0.9)
    assert aggregate([0.9] * 12 + [0.1] * 8, "mean") == pytest.approx(0.58)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate([0.5], "median")
    with pytest.raises(ValueError):
        confident_strategy([])


def test_same_video_id_under_two_methods_stays_two_videos():
    sm = StreamingMetrics()
    sm.update(["ffpp/Deepfakes/c23/000_003", "ffpp/Face2Face/c23/000_003"], [1, 1], [0.9, 0.2])
    sm.update(["ffpp/Deepfakes/c23/000_003", "ffpp/original/c23/000"], [1, 0], [0.7, 0.3])
    rows = {r["key"]: r for r in sm.videos()}
    assert len(rows) == 3
    df, f2f = rows["ffpp/Deepfakes/c23/000_003"], rows["ffpp/Face2Face/c23/000_003"]
    assert (df["method"], df["video_id"], df["num_clips"]) == ("Deepfakes", "000_003", 2)
    assert df["prob"] == pytest.approx(0.8) and f2f["prob"] == pytest.approx(0.2) and f2f["num_clips"] == 1
    res = sm.compute()
    assert res["video"]["n"] == 3 and res["clip"]["n"] == 4
    # fake-only methods are scored against the real-only method's reals
    assert res["per_method"]["Deepfakes"]["video"]["n"] == 2
    assert res["per_method"]["Deepfakes"]["video"]["auc"] == pytest.approx(1.0)
    assert res["per_method"]["Face2Face"]["video"]["auc"] == pytest.approx(0.0)
    assert res["per_method"]["original"]["video"]["n_fake"] == 0
    with pytest.raises(ValueError, match="dataset/method/compression/video_id"):
        sm.update(["ffpp/Deepfakes/c23/004", "Deepfakes/000_003"], [1, 1], [0.5, 0.5])
    assert len(sm.videos()) == 3 and len(sm) == 4


def test_conflicting_labels_raise_and_leave_state_unchanged():
    sm = StreamingMetrics()
    sm.update(["ffpp/Deepfakes/c23/000_003"], [1], [0.9])
    with pytest.raises(ValueError, match="ffpp/Deepfakes/c23/000_003"):
        sm.update(["ffpp/original/c23/001", "ffpp/Deepfakes/c23/000_003"], [0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="dfdc/-/-/abc"):
        sm.update(["dfdc/-/-/abc", "dfdc/-/-/abc"], [0, 1], [0.1, 0.2])
    assert len(sm) == 1 and [r["key"] for r in sm.videos()] == ["ffpp/Deepfakes/c23/000_003"]
    sm.update(["ffpp/original/c23/001"], [0], [0.1])  # the rolled-back key is usable again
    assert len(sm.videos()) == 2


def test_streaming_equals_one_shot():
    rng = np.random.default_rng(0)
    videos = [(f"ffpp/{m}/c23/{i:03d}", int(m != "original")) for m in ("Deepfakes", "Face2Face", "original")
              for i in range(15)]
    keys, labels = [], []
    for key, label in videos:
        n = int(rng.integers(1, 30))
        keys += [key] * n
        labels += [label] * n
    labels = np.array(labels)
    probs = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0, 1).astype(np.float32)
    order = rng.permutation(len(keys))
    sm = StreamingMetrics()
    for chunk in np.array_split(order, 7):
        sm.update([keys[i] for i in chunk], torch.from_numpy(labels[chunk]), torch.from_numpy(probs[chunk]))
    for strategy in ("mean", "confident"):
        res = sm.compute(strategy)
        assert res["clip"] == pytest.approx(binary_metrics(labels, probs))
        per_video = {k: (lab, aggregate(probs[[i for i, kk in enumerate(keys) if kk == k]], strategy))
                     for k, lab in videos}
        v_lab = [v[0] for v in per_video.values()]
        v_prob = [v[1] for v in per_video.values()]
        assert res["video"] == pytest.approx(binary_metrics(v_lab, v_prob))
        sel = [i for i, (k, _) in enumerate(videos) if "/Face2Face/" in k or "/original/" in k]
        assert res["per_method"]["Face2Face"]["video"] == pytest.approx(
            binary_metrics(np.array(v_lab)[sel], np.array(v_prob)[sel]))
        rows = sm.videos(strategy)
        assert {r["key"]: r["prob"] for r in rows} == pytest.approx({k: v[1] for k, v in per_video.items()})


def test_memory_one_million_clips():
    sm = StreamingMetrics()
    batch = 50_000
    ids = np.arange(batch) % 1000
    keys = [f"ffpp/{'original' if i % 2 else 'Deepfakes'}/c23/{i:03d}" for i in ids]
    labels = torch.from_numpy((ids % 2 == 0).astype(np.int64))
    rng = np.random.default_rng(0)
    for _ in range(20):
        sm.update(keys, labels, torch.from_numpy(rng.random(batch, dtype=np.float32)))
    assert len(sm) == 1_000_000 and len(sm.videos()) == 1000
    assert sm.nbytes < 12_000_000


def _md_table(text: str, heading: str) -> list[list[str]]:
    lines = text.split(heading, 1)[1].strip().splitlines()
    rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if ln.startswith("|")]
    table = []
    for row in rows:  # stop at the next heading's table
        if table and row[0] == "Model":
            break
        table.append(row)
    return [table[0]] + table[2:]  # drop the |---| line


def test_writers_layout(tmp_path):
    def met(acc, auc):
        return {"acc": acc, "acc_real": 90.0, "acc_fake": acc, "auc": auc, "ap": 0.9, "eer": 0.1,
                "n": 10, "n_real": 5, "n_fake": 5}

    methods = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")
    records = [{"model": "SSAT-ViT", "protocol": "cross", "method": m,
                "metrics": {"clip": met(80.0 + i, 0.5), "video": met(90.0 + i, 0.9 + i / 100)}}
               for i, m in enumerate(methods)]
    records += [{"model": "SSAT-ViT", "protocol": "zero-shot", "method": m,
                 "metrics": {"clip": met(70.0, 0.6), "video": met(71.234, 0.76543)}} for m in methods[:3]]
    records.append({"model": "ViT", "protocol": "cross", "method": "Deepfakes", "metrics": met(55.5, None)})
    table = results_table(records)
    paths = write_results(tmp_path / "out", table)
    assert sorted(p.name for p in paths.values()) == ["results.csv", "results.json", "results.md"]

    md = paths["md"].read_text()
    header = ["Model"] + [f"{m} (cross)" for m in methods] + [f"{m} (zero-shot)" for m in methods]
    acc = _md_table(md, "## Accuracy (%)")
    assert acc[0] == header
    assert acc[1] == ["SSAT-ViT", "90.00", "91.00", "92.00", "93.00", "71.23", "71.23", "71.23", "–"]
    assert acc[2] == ["ViT", "55.50"] + ["–"] * 7
    auc = _md_table(md, "## AUC (%)")
    assert auc[0] == header
    assert auc[1] == ["SSAT-ViT", "90.00", "91.00", "92.00", "93.00", "76.54", "76.54", "76.54", "–"]
    assert auc[2] == ["ViT"] + ["–"] * 8

    with open(paths["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 7 * 2 + 1
    row = next(r for r in rows if r["protocol"] == "zero-shot" and r["method"] == "FaceSwap" and r["level"] == "clip")
    assert float(row["acc"]) == 70.0 and float(row["auc"]) == 0.6 and row["n"] == "10"
    assert next(r for r in rows if r["model"] == "ViT")["auc"] == ""

    data = json.loads(paths["json"].read_text())
    assert data["columns"] == list(methods) and data["records"] == records

    with pytest.raises(ValueError, match="duplicate"):
        results_table(records + records[:1])
    with pytest.raises(ValueError, match="protocol"):
        results_table([{"model": "a", "protocol": "intra", "method": "Deepfakes", "metrics": {}}])


def test_predictions_csv_and_roc_png(tmp_path):
    sm = StreamingMetrics()
    sm.update(["ffpp/Deepfakes/c23/000_003", "ffpp/Face2Face/c23/000_003", "ffpp/original/c23/000"],
              [1, 1, 0], [0.9, 0.6, 0.2])
    write_predictions_csv(tmp_path / "pred.csv", sm.videos())
    with open(tmp_path / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["key", "dataset", "method", "compression", "video_id", "label", "prob", "num_clips"]
    assert [r["method"] for r in rows] == ["Deepfakes", "Face2Face", "original"]
    assert float(rows[1]["prob"]) == pytest.approx(0.6) and rows[2]["label"] == "0"

    roc_png({"a": ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]), "b": (torch.tensor([0, 1]), torch.tensor([0.2, 0.9]))},
            tmp_path / "roc.png", "FF++")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="'c'"):
        roc_png({"c": ([1, 1], [0.2, 0.9])}, tmp_path / "bad.png", "x")
    assert not (tmp_path / "bad.png").exists()


def test_one_reader_and_writer_keep_the_two_tables_apart_and_merge_by_key(tmp_path):
    from deepfake_ssat.eval import CROSSDATA_FORMAT, TABLE8_FORMAT, read_records, update_table

    m = binary_metrics([0, 1, 0, 1], [0.2, 0.9, 0.4, 0.6])
    cross, table8 = tmp_path / "cross", tmp_path / "table8"
    update_table(cross, [{"model": "a", "test_set": "DFDC test", "dataset": "dfdc-test", "metrics": m},
                         {"model": "a", "test_set": "FF++ (all)", "dataset": "ffpp", "metrics": m}], CROSSDATA_FORMAT)
    again = binary_metrics([0, 1], [0.1, 0.8])
    update_table(cross, [{"model": "a", "test_set": "DFDC test", "dataset": "dfdc-test", "metrics": again}],
                 CROSSDATA_FORMAT)
    rows = read_records(cross, CROSSDATA_FORMAT)
    assert [(r["test_set"], r["metrics"]["n"]) for r in rows] == [("FF++ (all)", 4), ("DFDC test", 2)]
    assert json.loads((cross / "results.json").read_text())["columns"] == ["FF++ (all)", "DFDC test"]  # FF++ first
    update_table(table8, [{"model": "a", "protocol": "cross", "method": "Deepfakes", "metrics": m}], TABLE8_FORMAT)
    update_table(table8, [{"model": "b", "protocol": "cross", "method": "Deepfakes", "metrics": m}], TABLE8_FORMAT)
    assert [r["model"] for r in read_records(table8, TABLE8_FORMAT)] == ["a", "b"]
    with pytest.raises(ValueError, match="not a Table 8 of dfssat-eval-ff"):
        read_records(cross, TABLE8_FORMAT)
    with pytest.raises(ValueError, match="not a cross-dataset table of dfssat-evaluate"):
        update_table(table8, rows, CROSSDATA_FORMAT)
    (table8 / "results.json").write_text("{broken")
    with pytest.raises(ValueError, match="not readable JSON"):
        read_records(table8, TABLE8_FORMAT)
