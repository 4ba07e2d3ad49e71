"""Checkpoint selection on validation (train.select) and the AdamW betas per recipe."""
import math

import pytest

from deepfake_ssat.config import ConfigError
from deepfake_ssat.engine.trainer import adamw_betas, select_metric
from deepfake_ssat.metrics import binary_metrics

VIDEO = {"acc": 80.0, "auc": 0.9, "log_loss": 0.4, "balanced_acc": 70.0}
VAL = {"loss": 1.2, "cls": 0.5, "rec": 0.8, "acc1": 75.0, "video": VIDEO}


def test_select_metric_per_setting():
    assert select_metric(VAL, "auto") == ("auc", 0.9, 0.9)
    assert select_metric(VAL, "acc") == ("acc", 80.0, 80.0)  # video level for face clips
    assert select_metric(VAL, "loss") == ("loss", 0.4, -0.4)  # video log-loss: lower is better
    image = {**VAL, "video": None}
    assert select_metric(image, "auto") == ("acc", 75.0, 75.0)
    assert select_metric(image, "loss") == ("loss", 1.2, -1.2)
    one_class = {**VAL, "video": {**VIDEO, "auc": None}}
    assert select_metric(one_class, "auto")[0] == "acc"
    with pytest.raises(ConfigError, match="train.select: auc needs"):
        select_metric(one_class, "auc")
    mae = {**VAL, "acc1": None, "video": None}
    assert select_metric(mae, "auc") == ("rec", 0.8, -0.8)


def test_binary_metrics_log_loss_and_balanced_accuracy():
    m = binary_metrics([0, 0, 0, 1], [0.2, 0.6, 0.1, 0.9])  # one real wrong: acc_real 66.7, acc_fake 100
    assert m["balanced_acc"] == pytest.approx((200 / 3 + 100) / 2)

    expected = -(math.log(0.8) + math.log(0.4) + math.log(0.9) + math.log(0.9)) / 4
    assert m["log_loss"] == pytest.approx(expected)
    assert binary_metrics([1, 1], [0.0, 1.0])["log_loss"] < 20  # clipped, never inf


def test_adamw_betas_follow_the_recipe(tiny_cfg):
    assert adamw_betas(tiny_cfg()) == (0.9, 0.999)
    assert adamw_betas(tiny_cfg("ssat.lam=0.0")) == (0.9, 0.95)
    assert adamw_betas(tiny_cfg("train.betas=[0.8,0.99]")) == (0.8, 0.99)
    with pytest.raises(ConfigError, match="train.betas"):
        adamw_betas(tiny_cfg("train.betas=[0.9,1.5]"))


def test_unknown_select_is_one_line(tiny_cfg, tmp_path):
    from deepfake_ssat.engine import fit
    with pytest.raises(ConfigError, match="train.select: must be one of auto, auc, acc, loss"):
        fit(tiny_cfg("train.select=f1"), tmp_path)
