"""tools/eval_ff.py (issue 5): zero-shot and a cross-manipulation fold on test-made FF++ crops."""
import csv
import json
import subprocess
import sys

import pytest
from conftest import ROOT, run_env

from deepfake_ssat.config import load_config
from deepfake_ssat.engine import fit
from deepfake_ssat.commands.eval_ff import main as eval_ff_main


@pytest.fixture(scope="module")
def dfdc_checkpoint(face_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("dfdc_run")
    cfg = load_config("video/tiny/dfdc_videomae_095",
                      [f"data.root={face_data.dfdc}", "train.epochs=1", "data.loader.batch_size=2"])
    fit(cfg, out)
    return out / "best.pt"


@pytest.mark.slow
def test_zero_shot_and_cross_fold_write_table_8(face_data, dfdc_checkpoint, tmp_path, capsys):
    out = tmp_path / "eval"
    code = eval_ff_main(["--zero-shot", "--leave-out", "NeuralTextures", "--checkpoint", str(dfdc_checkpoint),
                         "--data-root", str(face_data.ffpp), "--splits-dir", str(face_data.splits),
                         "--config", str(ROOT / "configs/video/tiny/ffpp_videomae_095.yaml"), "--name", "ssat",
                         "--opts", "train.epochs=1", "data.loader.batch_size=2", "--out", str(out)])
    assert code == 0
    md = (out / "results.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model"))
    assert [c.strip() for c in header.strip("|").split("|")][1:5] == [
        "Deepfakes (cross)", "Face2Face (cross)", "FaceSwap (cross)", "NeuralTextures (cross)"]
    row = next(line for line in md.splitlines() if line.startswith("| ssat"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["–"] * 3 and cells[4] != "–" and all(c != "–" for c in cells[5:9])
    records = json.loads((out / "results.json").read_text())["records"]
    assert {(r["protocol"], r["method"]) for r in records} == {
        ("cross", "NeuralTextures"), *(("zero-shot", m) for m in ("Deepfakes", "Face2Face", "FaceSwap",
                                                                   "NeuralTextures"))}
    with open(out / "predictions_zero_shot.csv") as f:
        videos = list(csv.DictReader(f))
    # 1 test pair: 2 originals + 2 fakes per method, each its own video (never merged across methods)
    assert len(videos) == len({v["key"] for v in videos}) == 2 + 4 * 2
    assert {v["key"] for v in videos if v["video_id"] == "007_006"} == {
        f"ffpp/{m}/c23/007_006" for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")}
    assert (out / "roc_zero_shot.png").stat().st_size > 0 and (out / "roc_cross.png").stat().st_size > 0
    fold = out / "cross" / "ssat" / "NeuralTextures"
    trained_on = json.loads((fold / "data_manifest.json").read_text())["splits"]["train"]
    assert not any("/NeuralTextures/" in v["key"] for v in trained_on)  # the left-out method is never trained on
    tested = list(csv.DictReader(open(fold / "predictions_test.csv")))
    assert {v["method"] for v in tested} == {"original", "NeuralTextures"}
    # a second run (scratch row) merges into the same table
    assert eval_ff_main(["--leave-out", "Deepfakes", "--scratch", "--data-root", str(face_data.ffpp),
                         "--splits-dir", str(face_data.splits), "--config",
                         str(ROOT / "configs/video/tiny/ffpp_videomae_scratch.yaml"), "--opts", "train.epochs=1",
                         "data.loader.batch_size=2", "--out", str(out)]) == 0
    models = {r["model"] for r in json.loads((out / "results.json").read_text())["records"]}
    assert models == {"ssat", "Scratch"}
    assert (fold / "best.pt").is_file() and (out / "cross" / "Scratch" / "Deepfakes" / "config.yaml").is_file()


def test_eval_ff_bad_input_is_one_line(face_data, tmp_path):
    def run(*args):
        return subprocess.run([sys.executable, str(ROOT / "tools/eval_ff.py"), *args, "--out", str(tmp_path / "o")],
                              capture_output=True, text=True, env=run_env(), timeout=120)

    missing = run("--zero-shot", "--checkpoint", str(tmp_path / "none.pt"), "--data-root", str(face_data.ffpp))
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: --checkpoint: {tmp_path / 'none.pt'} not found"
    empty = tmp_path / "empty"
    empty.mkdir()
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(b"junk")
    no_data = run("--zero-shot", "--checkpoint", str(ckpt), "--data-root", str(empty))
    assert no_data.returncode == 2 and len(no_data.stderr.strip().splitlines()) == 1
    neither = run("--data-root", str(empty))
    assert neither.returncode == 2 and "give --leave-out" in neither.stderr


# ------------------------------------------------------------------ safe in a user's hands (no NaN, Ctrl-C)


def _strict_json(text):
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}"))


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


TINY_CKPT_CONFIGS = {  # checkpoint -> the tiny DFDC config it is saved with
    "good": "dfdc_videomae_scratch", "nan": "dfdc_videomae_scratch",  # classification only, from scratch
    "ssat075": "dfdc_videomae_075",  # VideoMAE (0.75) + SSAT
    "sslft075": "dfdc_videomae_ssl_075_ft",  # VideoMAE SSL (0.75) -> FT: lam 1, init_from .../dfdc_videomae_ssl_075
}


@pytest.fixture(scope="module")
def tiny_ckpts(tmp_path_factory):
    """Untrained tiny VideoMAE checkpoints (no training), saved with the configs of TINY_CKPT_CONFIGS: ``good``
    and ``nan`` (one weight NaN: every logit NaN) are scratch models, ``ssat075`` / ``sslft075`` other rows."""
    import torch

    from deepfake_ssat.config import config_to_dict
    from deepfake_ssat.engine.build import build_model
    from deepfake_ssat.engine.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("tiny_ckpts")
    paths = {}
    for name, config in TINY_CKPT_CONFIGS.items():
        cfg = load_config(f"video/tiny/{config}")
        torch.manual_seed(0)
        model = build_model(cfg, 2)
        if name == "nan":
            with torch.no_grad():
                model.encoder.head.bias[0] = float("nan")
        paths[name] = root / name / "best.pt"
        paths[name].parent.mkdir()
        save_checkpoint(paths[name], {"model": model.state_dict(), "config": config_to_dict(cfg), "meta": {}})
    return paths


def _zero_shot_argv(face_data, ckpt, out):
    return ["--zero-shot", "--checkpoint", str(ckpt), "--data-root", str(face_data.ffpp), "--splits-dir",
            str(face_data.splits), "--name", "tiny", "--device", "cpu", "--out", str(out)]


def test_eval_ff_nan_scores_are_an_error_not_an_accuracy(face_data, tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "eval"
    assert eval_ff_main(_zero_shot_argv(face_data, tiny_ckpts["nan"], out)) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tiny_ckpts['nan']}: model output is not finite (NaN) for ") and \
        "(first: video ffpp/" in line and line.endswith("the weights may be corrupted"), line
    assert not (out / "results.json").exists() and not (out / "predictions_zero_shot.csv").exists()


def test_eval_ff_out_that_is_a_file_is_refused_first(face_data, tiny_ckpts, tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("keep me\n")
    assert eval_ff_main(_zero_shot_argv(face_data, tiny_ckpts["good"], out)) == 2
    assert _one_line(capsys.readouterr().err) == f"error: --out {out}: is an existing file; give a folder"
    assert out.read_text() == "keep me\n"


def test_eval_ff_ctrl_c_keeps_the_finished_protocols(face_data, tiny_ckpts, tmp_path, capsys, monkeypatch):
    import deepfake_ssat.engine

    def fit(cfg, run, *args, **kwargs):  # Ctrl-C while the cross-manipulation fold trains
        raise KeyboardInterrupt

    monkeypatch.setattr(deepfake_ssat.engine, "fit", fit)
    out = tmp_path / "eval"
    argv = _zero_shot_argv(face_data, tiny_ckpts["good"], out) + [
        "--leave-out", "NeuralTextures", "--config", str(ROOT / "configs/video/tiny/ffpp_videomae_scratch.yaml")]
    try:
        code = eval_ff_main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped eval_ff_main (the user sees a traceback)")
    assert code == 130
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"interrupted: results of the finished zero-shot kept in {out / 'results.md'}"), line
    assert "a rerun evaluates every requested protocol and fold again" in line
    assert line.endswith("continue with: dfssat-eval-ff " + " ".join(argv))
    records = _strict_json((out / "results.json").read_text())["records"]
    assert {(r["protocol"], r["method"]) for r in records} == {
        ("zero-shot", m) for m in ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")}
    assert "| tiny |" in (out / "results.md").read_text()


def test_report_refuses_nan_scores_and_metrics(tmp_path):
    from deepfake_ssat.eval.report import results_table, roc_png, write_predictions_csv

    nan = float("nan")
    record = {"model": "m", "protocol": "zero-shot", "method": "Deepfakes",
              "metrics": {"clip": {"acc": 50.0}, "video": {"acc": nan, "auc": 0.5}}}
    with pytest.raises(ValueError, match=r"metric video\.acc = nan is not a finite number"):
        results_table([record])
    row = {"key": "ffpp/Deepfakes/c23/000_003", "dataset": "ffpp", "method": "Deepfakes", "compression": "c23",
           "video_id": "000_003", "label": 1, "prob": nan, "num_clips": 2}
    with pytest.raises(ValueError, match="video ffpp/Deepfakes/c23/000_003: score is nan"):
        write_predictions_csv(tmp_path / "pred.csv", [row])
    assert not (tmp_path / "pred.csv").exists()
    with pytest.raises(ValueError, match="NaN / inf scores"):
        roc_png({"Deepfakes": ([0, 1], [0.2, nan])}, tmp_path / "roc.png")


# ------------------------------------------------------------------ issue 13: each Table 8 row keeps its recipe


@pytest.mark.parametrize("ckpt, row, lam, mask_ratio, decoder", [
    ("ssat075", "075", 0.1, 0.75, {"embed_dim": 128, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}),
    ("sslft075", "ssl_075_ft", 1.0, 0.75, None),
    ("good", "scratch", 1.0, 0.95, None),  # scratch: mask_ratio is the (unused) shared default
])
def test_cross_fold_trains_with_the_checkpoints_own_recipe(face_data, tiny_ckpts, tmp_path, capsys, ckpt, row, lam,
                                                           mask_ratio, decoder):
    """No --config: the checkpoint's row picks ffpp_videomae_<row> (tiny variant for the tiny model), and the
    fold's run folder keeps the resolved config it trained with."""
    import yaml

    from deepfake_ssat.config import load_run_config

    out = tmp_path / "eval"
    assert eval_ff_main(["--leave-out", "NeuralTextures", "--checkpoint", str(tiny_ckpts[ckpt]), "--data-root",
                         str(face_data.ffpp), "--splits-dir", str(face_data.splits), "--device", "cpu",
                         "--opts", "train.epochs=1", "data.loader.batch_size=2", "--out", str(out)]) == 0
    fold = out / "cross" / ckpt / "NeuralTextures"  # row name: the checkpoint's run folder
    cfg = load_run_config(fold / "config.yaml")
    assert (cfg.ssat.lam, cfg.ssat.mask_ratio) == (lam, mask_ratio)
    assert yaml.safe_load((fold / "config.yaml").read_text())["decoder"] == decoder
    assert cfg.train.init_from == str(tiny_ckpts[ckpt]) and cfg.model.name == "videomae_test"
    assert cfg.train.epochs == 1 and cfg.data.loader.batch_size == 2 and cfg.data.name == "ffpp"  # --opts applied
    assert sorted(cfg.data.faces.methods) == ["Deepfakes", "Face2Face", "FaceSwap"]
    assert cfg.data.faces.exclude_methods == []
    recipe = json.loads((fold / "recipe.json").read_text())
    assert recipe["row"] == row and recipe["config"].endswith(f"video/tiny/ffpp_videomae_{row}.yaml")
    assert recipe["mismatch"] == [] and not recipe["allow_recipe_mismatch"]


def test_cross_recipe_mismatch_is_one_line_unless_allowed(face_data, tiny_ckpts, tmp_path, capsys):
    from deepfake_ssat.config import load_run_config

    out = tmp_path / "eval"
    config = ROOT / "configs/video/tiny/ffpp_videomae_095.yaml"
    argv = ["--leave-out", "NeuralTextures", "--checkpoint", str(tiny_ckpts["ssat075"]), "--data-root",
            str(face_data.ffpp), "--splits-dir", str(face_data.splits), "--device", "cpu", "--config", str(config),
            "--opts", "train.epochs=1", "data.loader.batch_size=2", "--out", str(out)]
    assert eval_ff_main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (f"error: --config {config}: recipe does not match --checkpoint {tiny_ckpts['ssat075']} "
                    f"(row 095 vs 075; ssat.mask_ratio 0.95 vs 0.75: config vs checkpoint); use --config "
                    f"ffpp_videomae_075, or add --allow-recipe-mismatch to fine-tune as configured"), line
    assert not (out / "cross").exists()  # refused before any fold trained
    # classification-only configs are refused for an SSAT checkpoint, an SSAT config for a scratch one
    for ckpt, other in (("ssat075", "ffpp_videomae_scratch"), ("good", "ffpp_videomae_075"),
                        ("sslft075", "ffpp_videomae_scratch"), ("sslft075", "ffpp_videomae_ssl_095_ft")):
        args = list(argv)
        args[args.index("--checkpoint") + 1] = str(tiny_ckpts[ckpt])
        args[args.index("--config") + 1] = f"tiny/{other}"
        assert eval_ff_main(args) == 2, (ckpt, other)
        assert "recipe does not match" in _one_line(capsys.readouterr().err)
    # explicit override: the config's recipe is trained, and the fold records that it differs
    assert eval_ff_main(argv + ["--allow-recipe-mismatch"]) == 0
    fold = out / "cross" / "ssat075" / "NeuralTextures"
    assert load_run_config(fold / "config.yaml").ssat.mask_ratio == 0.95
    recipe = json.loads((fold / "recipe.json").read_text())
    assert recipe["allow_recipe_mismatch"] and recipe["mismatch"] == ["row 095 vs 075", "ssat.mask_ratio 0.95 vs 0.75"]


def test_checkpoint_recipe_tells_the_rows_apart(tiny_ckpts, tmp_path):
    """lam in (0, 1): SSAT; lam 0: SSL pre-training; lam 1: SSL -> FT when it has an init_from (ratio from the
    pre-training checkpoint, else its run name), scratch without one."""
    import dataclasses

    from deepfake_ssat.config import ConfigError, config_to_dict
    from deepfake_ssat.engine.checkpoint import save_checkpoint
    from deepfake_ssat.eval.ffpp import checkpoint_recipe, recipe_config

    def row(name, *opts):
        return checkpoint_recipe(load_config(f"video/{name}", list(opts))).row

    assert [row(n) for n in ("dfdc_videomae_095", "dfdc_videomae_075", "dfdc_videomae_scratch",
                             "dfdc_videomae_ssl_095", "dfdc_videomae_ssl_075", "dfdc_videomae_ssl_095_ft",
                             "dfdc_videomae_ssl_075_ft")] == ["095", "075", "scratch", "ssl_095_ft", "ssl_075_ft",
                                                              "ssl_095_ft", "ssl_075_ft"]
    # the pre-training checkpoint's own config wins over a run name that tells nothing
    pre = load_config("video/tiny/dfdc_videomae_ssl_095")
    path = tmp_path / "pretrain" / "last.pt"
    path.parent.mkdir()
    save_checkpoint(path, {"model": {}, "config": config_to_dict(pre), "meta": {}})
    assert row("dfdc_videomae_ssl_075_ft", f"train.init_from={path}") == "ssl_095_ft"
    # an encoder from elsewhere (official VideoMAE .pth): no packaged row; the user names the config
    unknown = checkpoint_recipe(load_config("video/dfdc_videomae_scratch", ["train.init_from=videomae_k400.pth"]))
    assert unknown.row is None and unknown.lam == 1
    with pytest.raises(ConfigError, match="give --config .*ffpp_videomae_ssl_075_ft or ffpp_videomae_ssl_095_ft"):
        recipe_config(unknown)
    odd = checkpoint_recipe(load_config("video/dfdc_videomae_095", ["ssat.mask_ratio=0.9"]))
    with pytest.raises(ConfigError, match="no packaged FF\\+\\+ config"):
        recipe_config(odd)
    # full-size configs for a full-size checkpoint, tiny ones for the tiny model
    full = checkpoint_recipe(load_config("video/dfdc_videomae_075"))
    assert recipe_config(full, "videomae_base").parent.name == "video"
    assert recipe_config(full, "videomae_test").parent.name == "tiny"
    assert dataclasses.asdict(full)["decoder"] == {"embed_dim": 128, "depth": 2, "num_heads": 4, "mlp_ratio": 4.0}


def test_each_row_has_its_own_fold_folder():
    from deepfake_ssat.eval.ffpp import row_folder

    assert row_folder("VideoMAE (0.95) + SSAT") == "VideoMAE_0.95_SSAT" and row_folder("Scratch") == "Scratch"
    assert [row_folder(n) for n in ("..", ".", "", "../x", "a/b")] == ["model", "model", "model", "x", "a_b"]
