"""Image-mode SSAT through the engine: every encoder x auxiliary task (MAE, SimCLR, DINO) trains via
``fit``, image datasets / subsets / Mixup / the perturbed test, the shipped image configs, and the
study tools (lambda sweep, cost report, digits study)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from torch.utils.data import DataLoader

from conftest import ROOT, run_env
from deepfake_ssat.commands.train import main as train_main
from deepfake_ssat.config import ConfigError, load_config
from deepfake_ssat.data import build_datasets
from deepfake_ssat.engine import fit, load_checkpoint
from deepfake_ssat.engine.build import build_encoder, build_model
from deepfake_ssat.study.cost import CarbonFactors, cost_report
from deepfake_ssat.commands.cost_report import main as cost_main
from deepfake_ssat.models import SSAT
from deepfake_ssat.models.aux_tasks import SSATMultiView, nt_xent, pooled_features
from deepfake_ssat.commands.limited_data import main as study_main
from deepfake_ssat.commands.sweep_lambda import main as sweep_main

ENCODERS = ["vit_test", "swin_test", "cvt_test", "resnet50"]
AUX = ["mae", "simclr", "dino"]
SMALL = ["model.img_size=32", "data.images.subset_size=64", "data.loader.batch_size=8", "train.epochs=1"]


def _cfg(tiny_cfg, name, aux, *opts):
    return tiny_cfg(f"model.name={name}", f"ssat.aux={aux}", *SMALL, *opts)


def _encoder_state(ckpt: dict) -> dict:
    return {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}


@pytest.mark.parametrize("aux", AUX)
@pytest.mark.parametrize("name", ENCODERS)
def test_every_encoder_and_aux_task_trains_and_infers_without_auxiliary_parts(tiny_cfg, tmp_path, name, aux):
    cfg = _cfg(tiny_cfg, name, aux)
    if name == "resnet50" and aux == "mae":  # no masked pass: MAE needs lam = 1, i.e. scratch
        with pytest.raises(ConfigError, match="ssat.lam: 0.1 needs a masked pass"):
            fit(cfg, tmp_path / "run", max_steps=1)
        cfg = _cfg(tiny_cfg, name, aux, "ssat.lam=1.0")

    # one step by hand: gradients exactly where they belong
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=10).train()
    multiview = aux != "mae" and cfg.ssat.lam < 1
    assert isinstance(model, SSATMultiView if multiview else SSAT)
    data = build_datasets(cfg.data, 32, 1, views=2 if multiview else 1)
    x, y = next(iter(DataLoader(data["train"], batch_size=4)))
    if multiview:
        assert isinstance(x, list) and len(x) == 2 and x[0].shape == (4, 1, 32, 32)
        loss, parts = model(x, y)
        assert set(parts) == {"cls", "aux"}
    else:
        loss, parts = model.loss(model(x), x, y)
    loss.backward()
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    frozen = set(params) - trainable
    if aux == "dino":  # the teacher (and the fixed weight-norm scale) never take gradients
        assert frozen and all(n.startswith(("aux.teacher_", "aux.head.last.parametrizations.weight.original0"))
                              for n in frozen)
        assert any(n.startswith("aux.teacher_encoder.") for n in frozen)
    else:
        assert frozen == set()
    assert all(params[n].grad is None for n in frozen)
    # no gradient: the encoder's mask token without a masked pass; CvT's last patch queries (only its
    # class token is read) whenever the only encoder output used is the pooled feature
    expected_none = {n for n in trainable if n == "encoder.mask_token" and (multiview or cfg.ssat.lam == 1.0)}
    expected_zero = {n for n in trainable
                     if (multiview or cfg.ssat.lam == 1.0) and n.startswith("encoder.stages.2.blocks.0.attn.conv_q.")}
    none = {n for n in trainable if params[n].grad is None}
    zero = {n for n in trainable if params[n].grad is not None and params[n].grad.abs().sum() == 0}
    assert none == expected_none and zero == expected_zero

    # through the engine: one update, checkpointed
    assert fit(cfg, tmp_path / "run", max_steps=1) == {"stopped_at_step": 1}
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    keys = ckpt["model"].keys()
    assert any(k.startswith("decoder.") for k in keys) == (aux == "mae" and cfg.ssat.lam < 1)
    assert any(k.startswith("aux.teacher_encoder.") for k in keys) == (aux == "dino" and multiview)

    # inference: the encoder alone, from the checkpoint's encoder weights; no decoder, no teacher
    encoder = build_encoder(cfg.model, num_classes=10).eval()
    encoder.load_state_dict(_encoder_state(ckpt))
    model.load_state_dict(ckpt["model"])
    model.eval()
    with torch.no_grad():
        xs = x[0] if multiview else x
        torch.testing.assert_close(encoder(xs), model.predict(xs))
        assert encoder(xs).shape == (4, 10)


def test_dino_teacher_moves_by_ema_of_the_student_only(tiny_cfg, tmp_path):
    cfg = _cfg(tiny_cfg, "vit_test", "dino", "ssat.dino.ema=0.9", "train.seed=3")
    torch.manual_seed(cfg.train.seed)  # fit builds the model right after seeding: the same initial weights
    start = build_model(cfg, num_classes=10)
    fit(cfg, tmp_path / "run", max_steps=1)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["model"]
    m = 0.9  # the cosine schedule starts at ssat.dino.ema
    student = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    initial = {k[len("aux.teacher_encoder."):]: v for k, v in start.state_dict().items()
               if k.startswith("aux.teacher_encoder.")}
    teacher = {k[len("aux.teacher_encoder."):]: v for k, v in state.items() if k.startswith("aux.teacher_encoder.")}
    assert teacher and "head.weight" not in teacher  # no classifier in the teacher
    moved = 0
    for k, v in teacher.items():
        torch.testing.assert_close(v, m * initial[k] + (1 - m) * student[k])
        moved += not torch.equal(v, initial[k])
    assert moved > 0


@pytest.mark.parametrize("opts", [("ssat.aux=dino",), ("ssat.aux=simclr",),
                                  ("data.images.mixup=0.8", "data.images.cutmix=1.0")],
                         ids=["dino", "simclr", "mixup"])
def test_resume_is_bit_exact_with_views_teacher_and_mixup(tiny_cfg, tmp_path, opts):
    cfg = tiny_cfg("model.img_size=32", "data.images.subset_size=64", "data.loader.batch_size=8", "train.epochs=2",
                   *opts)
    fit(cfg, tmp_path / "whole")
    assert fit(cfg, tmp_path / "split", max_steps=5) == {"stopped_at_step": 5}
    fit(cfg, tmp_path / "split", resume=tmp_path / "split" / "last.pt")
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    split = load_checkpoint(tmp_path / "split" / "last.pt")["model"]
    assert whole.keys() == split.keys()
    for k in whole:
        assert torch.equal(whole[k], split[k]), k


def test_swin_simclr_loss_is_lam_ce_plus_nt_xent_by_hand():
    cfg = load_config("paper/aux/cifar10_vit_tiny_simclr",
                      ["model.name=swin_test", "model.img_size=32", "model.drop_path_rate=0.0", "ssat.lam=0.3",
                       "ssat.label_smoothing=0.0", "ssat.simclr.temperature=0.2"])
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=5).eval()
    views = [torch.randn(3, 3, 32, 32) for _ in range(2)]
    y = torch.tensor([0, 4, 2])
    loss, parts = model(views, y)
    f1, f2 = (pooled_features(model.encoder, v) for v in views)
    ce = F.cross_entropy(model.encoder(views[0]), y)
    z1, z2 = model.aux.head(f1), model.aux.head(f2)
    n = 3
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / 0.2
    expected_aux = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = torch.cat([sim[i, :i], sim[i, i + 1:]])
        expected_aux -= (sim[i, j] - torch.logsumexp(others, 0)) / (2 * n)
    torch.testing.assert_close(parts["cls"], ce.detach())
    torch.testing.assert_close(parts["aux"], expected_aux.detach())
    torch.testing.assert_close(nt_xent(z1, z2, 0.2), expected_aux)
    torch.testing.assert_close(loss, 0.3 * ce + 0.7 * expected_aux)


def test_multiview_and_mixup_config_errors(tiny_cfg, tmp_path):
    with pytest.raises(ConfigError, match="ssat.aux: must be one of mae, simclr, dino"):
        build_model(_cfg(tiny_cfg, "vit_test", "byol"), num_classes=10)
    with pytest.raises(ConfigError, match="ssat.lam: 0 .* needs 0 < lam < 1"):
        build_model(_cfg(tiny_cfg, "vit_test", "dino", "ssat.lam=0.0"), num_classes=10)
    assert isinstance(build_model(_cfg(tiny_cfg, "vit_test", "dino", "ssat.lam=1.0"), num_classes=10), SSAT)
    with pytest.raises(ConfigError, match="data.images.mixup: .* two views"):
        fit(_cfg(tiny_cfg, "vit_test", "simclr", "data.images.mixup=0.8"), tmp_path / "a", max_steps=1)
    with pytest.raises(ConfigError, match="data.loader.batch_size: .* odd"):
        fit(_cfg(tiny_cfg, "vit_test", "mae", "data.images.cutmix=1.0", "data.loader.batch_size=7"), tmp_path / "b",
            max_steps=1)


def test_digits_subsets_are_reproducible_and_stratified(tiny_cfg):
    def train_of(*opts):
        return build_datasets(tiny_cfg(*opts).data, 32, 1)["train"]

    full = train_of()
    a, b = train_of("data.images.subset_size=100"), train_of("data.images.subset_size=100")
    other = train_of("data.images.subset_size=100", "data.split_seed=1")
    assert len(a) == 100 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, other.images)
    counts = torch.bincount(a.labels, minlength=10)
    assert counts.min() >= 9 and counts.max() <= 11  # ~10 per class, as in the full split
    assert len(train_of("data.images.subset_fraction=0.5")) == round(0.5 * len(full))
    with pytest.raises(ConfigError,
                       match="data.images.subset_size: set data.images.subset_fraction or data.images.subset_size"):
        train_of("data.images.subset_size=10", "data.images.subset_fraction=0.5")


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """A Chaoyang-like ImageFolder tree: 3 classes, train 8 / val 2 / test 2 images each, 40x36 px RGB."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2), ("test", 2)):
        for c, cls in enumerate(("normal", "serrated", "tumour")):
            folder = tmp_path / "chaoyang" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
                pixels[..., c] = 255  # a class cue
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return tmp_path / "chaoyang"


def test_image_folder_training_with_mixup_and_perturbed_test(folder_root, tmp_path):
    cfg = load_config("chaoyang_vit_tiny_ssat", [
        f"data.root={folder_root}", "model.name=vit_test", "model.img_size=32", "data.loader.batch_size=4",
        "data.loader.num_workers=0", "data.images.mixup=0.8", "data.images.cutmix=1.0",
        "data.images.eval_perturbed=true", "train.epochs=2",
        "train.warmup_epochs=1", "train.device=cpu", "train.log_every_steps=1"])
    summary = fit(cfg, tmp_path / "run")
    assert summary["steps"] == 2 * (24 // 4)
    assert summary["test_acc1"] is not None and summary["test_acc1_perturbed"] is not None
    manifest = json.loads((tmp_path / "run" / "data_manifest.json").read_text())
    assert set(manifest["splits"]) == {"train", "val", "test", "test_perturbed"}

    data = build_datasets(cfg.data, 32, 3)
    clean, warped = data["test"], data["test_perturbed"]
    assert len(warped) == len(clean) == 6 and warped.labels == clean.labels
    first = warped[0][0]
    torch.testing.assert_close(first, warped[0][0])  # one fixed draw per image
    assert not torch.equal(first, clean[0][0]) and first.shape == clean[0][0].shape == (3, 32, 32)
    loader = [x for x, _ in DataLoader(warped, batch_size=4, num_workers=2)]
    torch.testing.assert_close(loader[0][0], first)  # same draw under workers


def test_missing_dataset_root_is_one_line(tmp_path, capsys):
    for config, needle in [("configs/image/cifar10/cifar10_vit_tiny_ssat.yaml", "cifar-10-batches-py not found"),
                           ("configs/image/chaoyang/chaoyang_vit_tiny_scratch.yaml", "train not found"),
                           ("configs/image/svhn/svhn_resnet50_scratch.yaml", "nowhere not found; download SVHN")]:
        rc = train_main(["--config", str(ROOT / config), "--out", str(tmp_path / "run"),
                         "--opts", f"data.root={tmp_path / 'nowhere'}", "train.device=cpu"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("error: data.root: ") and needle in err, err
    assert not (tmp_path / "nowhere").exists()  # nothing downloaded or created


def test_shipped_image_configs_load_and_pair_up():
    configs = ROOT / "configs"
    datasets = ["cifar10", "cifar100", "flowers102", "svhn", "chaoyang", "pmnist", "domainnet_clipart",
                "domainnet_infograph", "domainnet_sketch", "imagenet_subset"]
    models = {}
    for ds in datasets:
        for model in ["vit_tiny", "vit_small", "swin_tiny", "cvt_13"]:
            ssat = load_config(configs / f"image/{ds}/{ds}_{model}_ssat.yaml")
            scratch = load_config(configs / f"image/{ds}/{ds}_{model}_scratch.yaml")
            assert ssat.ssat.lam == 0.1 and ssat.decoder is not None and ssat.ssat.aux == "mae"
            assert scratch.ssat.lam == 1.0 and scratch.decoder is None
            assert scratch.model == ssat.model and scratch.data == ssat.data and scratch.train == ssat.train
            assert ssat.train.epochs == 100 and ssat.model.img_size == 224 and ssat.data.root
            models[ssat.model.name] = ssat.model
        resnet = load_config(configs / f"image/{ds}/{ds}_resnet50_scratch.yaml")
        assert resnet.ssat.lam == 1.0 and resnet.model.drop_path_rate is None
        models[resnet.model.name] = resnet.model
    assert load_config("cifar100_vit_tiny_ssat").data.images.eval_perturbed
    assert load_config("imagenet_subset_vit_tiny_ssat").data.images.subset_fraction == 0.1
    for ssl in (50, 100):
        pre = load_config(configs / f"paper/ssl_ft/cifar10_vit_tiny_ssl{ssl}.yaml")
        assert pre.ssat.lam == 0.0 and pre.train.epochs == ssl and pre.decoder is not None
        for ft in (50, 100):
            tune = load_config(configs / f"paper/ssl_ft/cifar10_vit_tiny_ssl{ssl}_ft{ft}.yaml")
            assert tune.ssat.lam == 1.0 and tune.train.epochs == ft
            assert tune.train.init_from == f"runs/ssl_ft/cifar10_vit_tiny_ssl{ssl}/last.pt"
    for aux in AUX:
        assert load_config(configs / f"paper/aux/cifar100_vit_tiny_{aux}.yaml").ssat.aux == aux
    assert load_config(configs / "paper/fig4/cifar100_vit_tiny_ssat_300ep.yaml").train.epochs == 300
    assert load_config(configs / "paper/fig5/imagenet_vit_tiny_scratch_25pct.yaml").data.images.subset_fraction == 0.25
    for path in configs.rglob("*.yaml"):  # every shipped config parses (bases are partial)
        if not any(part.startswith("_") for part in path.relative_to(configs).parts):
            load_config(path)
    # every encoder the image configs name builds with their arguments
    assert sorted(models) == ["cvt_13", "resnet50", "swin_tiny_patch4_window7_224", "vit_small_patch16_224",
                              "vit_tiny_patch16_224"]
    for model_cfg in models.values():
        assert build_encoder(model_cfg, num_classes=10).img_size == 224


def test_lambda_sweep_tool_runs_two_points(tiny_config_file, tmp_path, capsys):
    rc = sweep_main(["--config", str(tiny_config_file), "--lams", "0.5,1.0", "--out", str(tmp_path / "sweep"),
                     "--opts", "train.epochs=1", "data.images.subset_size=128", "model.name=vit_test"])
    out = capsys.readouterr().out
    assert rc == 0, out
    result = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["lam"] for r in result["runs"]] == [0.5, 1.0]
    assert all(r["test_acc1"] is not None for r in result["runs"])
    assert set(result["per_lam"]) == {"0.5", "1"} and result["best_lam_on_val"] in ("0.5", "1")
    assert load_config(tmp_path / "sweep/lam1/seed0/config.yaml").decoder is not None  # lam 1: decoder unused
    assert "| 0.5 |" in out
    # a second call reuses the finished runs
    assert sweep_main(["--config", str(tiny_config_file), "--lams", "0.5", "--out", str(tmp_path / "sweep"),
                       "--opts", "train.epochs=1", "data.images.subset_size=128", "model.name=vit_test", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"][0]["reused"] is True


def test_cost_report_has_every_factor(tiny_cfg, tmp_path, capsys):
    fit(tiny_cfg("train.epochs=1", "data.images.subset_size=128", "ssat.lam=0.0"), tmp_path / "ssl")
    fit(tiny_cfg("train.epochs=1", "data.images.subset_size=128", "ssat.lam=1.0", "decoder=null",
                 f"train.init_from={tmp_path / 'ssl' / 'last.pt'}"), tmp_path / "ft")
    fit(tiny_cfg("train.epochs=1", "data.images.subset_size=128"), tmp_path / "ssat")
    factors = CarbonFactors(device_power_w=300.0, pue=1.5, grid_kg_per_kwh=0.4)
    report = cost_report([f"{tmp_path / 'ssl'}+{tmp_path / 'ft'}", str(tmp_path / "ssat")], factors)
    assert report["factors"] == {"device_power_w": 300.0, "pue": 1.5, "grid_kg_per_kwh": 0.4}
    pipe, ssat = report["rows"]
    ssl_stage, ft_stage = pipe["stages"]
    assert ssl_stage["method"] == "mae pre-training" and ft_stage["method"] == "fine-tune"
    ssl_f, ft_f, ssat_f = (s["train_forward_gflops"] for s in (ssl_stage, ft_stage, ssat["stages"][0]))
    assert pipe["train_forward_gflops"] == f"{ssl_f:.3g}+{ft_f:.3g}"
    # SSAT's training forward = the scratch pass + the MAE pass; pre-training is the MAE pass alone
    assert ssl_f < ft_f < ssat_f
    assert ft_stage["inference_gflops"] == pytest.approx(ssat["inference_gflops"])
    assert ssat_f == pytest.approx(ft_f + ssl_f, rel=0.05)
    for row in report["rows"]:
        hours = row["train_seconds"] / 3600
        assert row["device_hours"] == pytest.approx(hours)
        assert row["energy_kwh"] == pytest.approx(hours * 0.3 * 1.5)
        assert row["kg_co2eq"] == pytest.approx(hours * 0.3 * 1.5 * 0.4)
    capsys.readouterr()  # the runs' own output
    assert cost_main([str(tmp_path / "ssat"), "--pue", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["factors"] == {"device_power_w": 230.0, "pue": 2.0, "grid_kg_per_kwh": 0.432}
    assert cost_main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nowhere' / 'config.yaml'}: not found")


def test_cost_matches_the_paper_for_vit_tiny():
    """Table 3: ViT-T 1.26 GFLOPs (multiply-adds), SSAT 1.67, MAE pre-training 0.43; 60 GPU hours -> 5.96 kg."""
    from deepfake_ssat.study.cost import carbon_estimate, gflops_per_image
    cfg = load_config("imagenet_vit_tiny_ssat")
    torch.manual_seed(0)
    got = {lam: gflops_per_image(build_model(load_config("imagenet_vit_tiny_ssat",
                                                         [f"ssat.lam={lam}"]), 1000))["train_forward_gmacs"]
           for lam in (1.0, 0.1, 0.0)}
    assert cfg.model.name == "vit_tiny_patch16_224"
    assert got[1.0] == pytest.approx(1.26, abs=0.02)
    assert got[0.1] == pytest.approx(1.67, abs=0.04)
    assert got[0.0] == pytest.approx(0.43, abs=0.02)
    assert carbon_estimate(60 * 3600)["kg_co2eq"] == pytest.approx(5.96, abs=0.01)


def test_limited_data_study_over_fractions_and_seeds_continues_where_it_stopped(tmp_path, capsys):
    """Two fractions x two seeds x (scratch, ssat, one variant) on digits, 1 epoch: sizes drawn from the training
    set, mean ± sample std and the paired SSAT - scratch per fraction, the table and the plot; a study stopped
    after seed 0 continues with seed 1 without retraining seed 0."""
    out = tmp_path / "study"
    common = ["--fractions", "0.04,0.08", "--epochs", "1", "--out", str(out), "--opts", "train.warmup_epochs=0",
              "--variant", "lam0.5", "ssat.lam=0.5"]
    assert study_main([*common, "--seeds", "0"]) == 0
    first = json.loads((out / "study.json").read_text())
    assert len(first["runs"]) == 6 and not any(r["reused"] for r in first["runs"])
    capsys.readouterr()
    assert study_main([*common, "--seeds", "0,1"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "study.json").read_text())
    assert [r["reused"] for r in result["runs"] if r["seed"] == 0] == [True] * 6
    assert [r["reused"] for r in result["runs"] if r["seed"] == 1] == [False] * 6
    full, sizes = result["full_training_set"], result["training_images"]
    assert sizes == {"0.04": round(0.04 * full), "0.08": round(0.08 * full)} and full > 1000  # 1,797 digits less test
    for f, n in sizes.items():
        summary = json.loads((out / "scratch" / f"frac{f}" / "seed1" / "summary.json").read_text())
        cfg = yaml.safe_load((out / "scratch" / f"frac{f}" / "seed1" / "config.yaml").read_text())
        assert cfg["data"]["images"]["subset_size"] == n and summary["test_acc1"] is not None
    runs = {(r["variant"], r["seed"]): r["test_acc1"] for r in result["runs"] if r["fraction"] == 0.08}
    cell = result["stats"]["0.08"]["ssat"]["test_acc1"]
    assert cell["n"] == 2 and cell["mean"] == pytest.approx((runs["ssat", 0] + runs["ssat", 1]) / 2)
    assert cell["std"] == pytest.approx(abs(runs["ssat", 0] - runs["ssat", 1]) / math.sqrt(2))
    gaps = [runs["lam0.5", s] - runs["scratch", s] for s in (0, 1)]
    assert result["minus_scratch"]["0.08"]["lam0.5"]["mean"] == pytest.approx(sum(gaps) / 2)
    assert result["goal_met"] is None  # the goal is at fraction 0.1, not run here
    table = (out / "study.md").read_text()
    assert printed.rstrip().endswith(table.strip())  # the command prints the table it wrote
    assert table.count("| ssat |") == 2 and "not measured yet" in table
    assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_limited_data_study_continues_a_run_stored_before_a_key_was_added(tmp_path, capsys):
    """A run folder whose config.yaml lacks a key added since (its default then) is the same run: read back; one
    that differs in a value is refused, naming the key."""
    out = tmp_path / "study"
    common = ["--fractions", "0.04", "--seeds", "0", "--epochs", "1", "--out", str(out)]
    assert study_main(common) == 0
    saved = out / "ssat" / "frac0.04" / "seed0" / "config.yaml"
    tree = yaml.safe_load(saved.read_text())
    del tree["ssat"]["video_target"]  # as a run of before the key was added stored it
    saved.write_text(yaml.safe_dump(tree, sort_keys=False))
    assert study_main(common) == 0
    assert all(r["reused"] for r in json.loads((out / "study.json").read_text())["runs"])
    tree["ssat"]["mask_ratio"] = 0.5
    saved.write_text(yaml.safe_dump(tree, sort_keys=False))
    capsys.readouterr()
    assert study_main(common) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run with another config (ssat.mask_ratio: 0.5 there, 0.75 now)" in err[0]


def test_limited_data_study_bad_input_is_one_line(tmp_path, capsys):
    for argv, words in ((["--recipe", "nope_vit"], "--recipe nope_vit: no config nope_vit_scratch"),
                        (["--fractions", "0,0.5"], "--fractions: every fraction must be in (0, 1]"),
                        (["--seeds", "a"], "--seeds: comma-separated ints"),
                        (["--variant", "ssat", "ssat.lam=0.5"], "--variant ssat: the name is taken")):
        assert study_main([*argv, "--out", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_image_benchmark_models(tmp_path):
    from deepfake_ssat.bench.model import benchmark_model, build_variants, make_batch
    scratch, ssat = build_variants("vit_test@p4", [0.75], frames=16, img_size=32)
    assert scratch.encoder.patch_size == 4 and scratch.encoder.grid_size == (8, 8)
    x, y = make_batch(scratch, 2)
    assert x.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="@p"):
        build_variants("vit_test@px", [0.75])
    res = benchmark_model("vit_test", frames=16, img_size=32, batch=2, ratios=(0.75,), repeats=1, warmup=0,
                          matmul_gflops_per_s=100.0)
    assert res["kind"] == "image" and res["input_shape"] == [2, 3, 32, 32]
    assert res["ratios"]["0.75"]["analytic_flop_ratio"] > 1


@pytest.mark.slow
def test_torchrun_ddp_trains_dino(tiny_config_file, tmp_path):
    env = run_env()
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tools" / "train.py"), "--config", str(tiny_config_file), "--out", str(tmp_path / "ddp"),
           "--opts", "ssat.aux=dino", "model.name=swin_test", "model.img_size=32", "data.images.subset_size=64",
           "data.loader.batch_size=8", "train.epochs=2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 2 * (64 // 2 // 8)
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    assert any(k.startswith("aux.teacher_encoder.") for k in state)
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
