from pathlib import Path

import pytest
import yaml

from deepfake_ssat.config import (CHOICES, MOVED, RENAMED, Config, ConfigError, check_config, config_from_dict,
                                  config_to_dict, dump_config, find_config, load_config, load_run_config,
                                  packaged_configs)

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_shipped_digits_configs_load():
    ssat = load_config("digits_vit_tiny_ssat")
    scratch = load_config("digits_vit_tiny_scratch")
    assert ssat.decoder is not None and ssat.ssat.lam == 0.1
    assert scratch.decoder is None and scratch.ssat.lam == 1.0
    assert scratch.model == ssat.model and scratch.train == ssat.train and scratch.data == ssat.data


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model: {name: vit_test}\ndata: {name: digits, loader: {batch_size: 16}}\n"
                                  "train: {epochs: 3}\ndecoder: null\nssat: {lam: 1.0}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: {blr: 0.002}\ndecoder: {depth: 4}\n")
    cfg = load_config(child, ["train.epochs=7", "ssat.mask_ratio=0.95", "ssat.lam=0.1"])
    assert cfg.train.epochs == 7 and cfg.train.blr == 0.002  # base key kept, child key, override
    assert cfg.data.loader.batch_size == 16
    assert cfg.decoder.depth == 4 and cfg.decoder.embed_dim == 128  # null in base -> mapping in child
    assert cfg.ssat.mask_ratio == 0.95
    assert load_config(child, ["decoder=null", "ssat.lam=1"]).decoder is None
    assert isinstance(load_config(child, ["train.blr=1"]).train.blr, float)  # int accepted for float
    assert load_config(child, ["train.blr=1e-3"]).train.blr == 1e-3  # YAML 1.1 reads 1e-3 as a string


def test_unknown_key_names_key_and_file(tmp_path):
    path = write(tmp_path / "bad.yaml", "model: {name: vit_test}\ndata: {name: digits}\ntrain: {epoch: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "train.epoch" in msg and "bad.yaml" in msg and "did you mean 'epochs'" in msg
    assert "\n" not in msg


def test_unknown_key_in_base_names_the_base_file(tmp_path):
    write(tmp_path / "base.yaml", "model: {name: vit_test, depht: 3}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ndata: {name: digits}\n")
    with pytest.raises(ConfigError, match=r"base\.yaml: model\.depht: unknown key"):
        load_config(child)


def test_unknown_section(tmp_path):
    path = write(tmp_path / "c.yaml", "model: {name: vit_test}\ndata: {name: digits}\ntrainer: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: trainer: unknown key \(did you mean 'train'\?\)"):
        load_config(path)


@pytest.mark.parametrize("text,key,want", [
    ("train: {epochs: five}", "train.epochs", "must be int"),
    ("train: {epochs: 2.5}", "train.epochs", "must be int"),
    ("ssat: {norm_pix_loss: 1}", "ssat.norm_pix_loss", "must be bool"),
    ("train: 5", "train", "must be a mapping"),
    ("model: {name: 3}", "model.name", "must be str"),
])
def test_wrong_type_names_key_and_file(tmp_path, text, key, want):
    base = "model: {name: vit_test}\ndata: {name: digits}\n"
    path = write(tmp_path / "t.yaml", base + text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert f"t.yaml: {key}: {want}" in str(e.value)


def test_missing_required_value(tmp_path):
    path = write(tmp_path / "m.yaml", "data: {name: digits}\n")
    with pytest.raises(ConfigError, match=r"m\.yaml: model\.name: required value missing"):
        load_config(path)


def test_override_errors_name_opts(tmp_path):
    path = write(tmp_path / "o.yaml", "model: {name: vit_test}\ndata: {name: digits}\n")
    with pytest.raises(ConfigError, match=r"--opts: train\.epochs: must be int"):
        load_config(path, ["train.epochs=lots"])
    with pytest.raises(ConfigError, match=r"--opts: train\.nope: unknown key"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(path, ["train.epochs"])


def test_missing_file_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    path = write(tmp_path / "broken.yaml", "model: {name: vit_test\n")
    with pytest.raises(ConfigError, match="broken.yaml.*invalid YAML"):
        load_config(path)


def test_round_trip_through_dict_and_yaml(tmp_path):
    cfg = load_config("digits_vit_tiny_ssat", ["train.epochs=3"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    again = load_config(write(tmp_path / "dumped.yaml", dump_config(cfg)))
    assert again == cfg and isinstance(again, Config)


def test_aux_settings_are_nested_under_ssat_simclr_and_ssat_dino():
    cfg = load_config("cifar10_vit_tiny_dino", ["ssat.dino.ema=0.99", "ssat.simclr.temperature=0.2"])
    assert cfg.ssat.aux == "dino" and cfg.ssat.dino.ema == 0.99 and cfg.ssat.dino.out_dim == 1024
    assert cfg.ssat.simclr.temperature == 0.2 and cfg.ssat.simclr.proj_dim == 128


@pytest.mark.parametrize("old, new", [("ssat.simclr_temperature", "ssat.simclr.temperature"),
                                      ("ssat.dino_ema", "ssat.dino.ema")])
def test_old_flat_aux_key_is_one_line_error_naming_the_new_key(tmp_path, old, new):
    with pytest.raises(ConfigError) as e:
        load_config("digits_vit_tiny_ssat", [f"{old}=0.5"])
    assert str(e.value) == f"--opts: {old}: unknown key (renamed: now {new})"
    leaf = old.split(".")[1]
    path = write(tmp_path / "old.yaml", f"model: {{name: vit_test}}\ndata: {{name: digits}}\nssat: {{{leaf}: 0.5}}\n")
    with pytest.raises(ConfigError, match=rf"old\.yaml: {old}: unknown key \(renamed: now {new}\)$"):
        load_config(path)


def test_checkpoint_config_with_old_flat_aux_keys_still_loads(tmp_path):
    stored = config_to_dict(load_config("cifar10_vit_tiny_simclr"))
    flat = {k: v for k, v in stored["ssat"].items() if k not in ("simclr", "dino")}
    flat.update({"simclr_temperature": 0.3, "simclr_proj_dim": 64, "dino_ema": 0.99, "dino_out_dim": 256})
    old = {**stored, "ssat": flat}  # as written by a checkpoint before the rename
    cfg = config_from_dict(old, source="old.pt")
    assert (cfg.ssat.simclr.temperature, cfg.ssat.simclr.proj_dim, cfg.ssat.simclr.hidden_dim) == (0.3, 64, 512)
    assert (cfg.ssat.dino.ema, cfg.ssat.dino.out_dim, cfg.ssat.dino.teacher_temp) == (0.99, 256, 0.04)
    assert "simclr_temperature" in old["ssat"]  # the stored dict is not modified
    # a run folder's config.yaml written before the rename (read by cost_report) too
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    assert load_run_config(tmp_path / "config.yaml") == cfg
    assert len(RENAMED) == 10 and all(new == old.replace("simclr_", "simclr.").replace("dino_", "dino.")
                                      for old, new in RENAMED.items())


def test_find_config_resolves_names_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = packaged_configs()
    video = root / "video" / "dfdc_videomae_095.yaml"
    for name in ("dfdc_videomae_095", "dfdc_videomae_095.yaml", "video/dfdc_videomae_095.yaml",
                 "video/dfdc_videomae_095", "configs/video/dfdc_videomae_095.yaml"):
        assert find_config(name).resolve() == video.resolve(), name
    digits = root / "image" / "digits" / "digits_vit_tiny_ssat.yaml"
    for name in ("digits_vit_tiny_ssat", "image/digits/digits_vit_tiny_ssat.yaml", "digits/digits_vit_tiny_ssat"):
        assert find_config(name).resolve() == digits.resolve(), name
    tiny = root / "video" / "tiny" / "dfdc_videomae_095.yaml"
    for name in ("video/tiny/dfdc_videomae_095", "tiny/dfdc_videomae_095.yaml", "configs/tiny/dfdc_videomae_095"):
        assert find_config(name).resolve() == tiny.resolve(), name  # a folder part picks the tiny variant
    assert load_config("dfdc_videomae_095").model.name != load_config("tiny/dfdc_videomae_095").model.name
    with pytest.raises(ConfigError, match="config file not found"):
        find_config(tmp_path / "video" / "dfdc_videomae_095.yaml")  # a missing absolute path is not a name
    with pytest.raises(ConfigError, match="did you mean .*video/dfdc_videomae_095"):
        find_config("dfdc_videomae_09")


def test_packaged_config_tree_and_bare_names_are_unique_but_for_tiny_variants():
    root = packaged_configs()
    assert sorted(p.name for p in root.iterdir()) == ["image", "paper", "video"]
    assert sorted(p.name for p in (root / "paper").iterdir()) == ["aux", "fig4", "fig5", "ssl_ft"]
    by_name: dict[str, list] = {}
    for path in root.rglob("*.yaml"):
        by_name.setdefault(path.name, []).append(path.relative_to(root))
    for name, paths in by_name.items():
        if len(paths) > 1:
            assert {str(p) for p in paths} == {f"video/{name}", f"video/tiny/{name}"}, paths
            assert find_config(name) == root / "video" / name
    for path in (root / "image").rglob("*.yaml"):  # image/<dataset>/<dataset>_<model>_<mode>.yaml
        rel = path.relative_to(root / "image")
        assert rel.parts[0] == "_base" or rel.name.startswith(rel.parts[0] + "_"), rel


def _flat_data(tree: dict) -> dict:
    """``tree`` with its data section as written before DataConfig was grouped (data.batch_size, ...)."""
    data = {k: v for k, v in tree["data"].items() if k not in ("faces", "images", "loader")}
    for group in ("faces", "images", "loader"):
        data.update(tree["data"][group])
    return {**tree, "data": data}


def test_data_settings_are_grouped_into_faces_images_and_loader():
    cfg = load_config("dfdc_videomae_095", ["data.loader.batch_size=2", "data.faces.eval_clips=3"])
    assert (cfg.data.loader.batch_size, cfg.data.loader.num_workers, cfg.data.loader.balanced) == (2, 8, True)
    assert (cfg.data.faces.eval_clips, cfg.data.faces.frame_step, cfg.data.images.mixup) == (3, 1, 0.0)
    assert set(config_to_dict(cfg)["data"]) == {"name", "root", "val_fraction", "test_fraction", "split_seed",
                                                "augment", "faces", "images", "loader"}
    assert all(new.startswith(("data.faces.", "data.images.", "data.loader.")) and new.endswith(old[4:])
               for old, new in MOVED.items()) and len(MOVED) == 24


def test_old_flat_data_keys_still_load_with_a_note_naming_the_new_key(tmp_path, capsys):
    path = write(tmp_path / "old.yaml", "model: {name: vit_test}\ndata: {name: digits, batch_size: 16, "
                                        "subset_size: 64}\n")
    cfg = load_config(path, ["data.eval_clips=3"])
    assert (cfg.data.loader.batch_size, cfg.data.images.subset_size, cfg.data.faces.eval_clips) == (16, 64, 3)
    notes = capsys.readouterr().err.splitlines()
    assert sorted(notes) == sorted([
        "[config] --opts: data.eval_clips is now data.faces.eval_clips (the old key is still read; rename it)",
        f"[config] {path}: data.batch_size is now data.loader.batch_size (the old key is still read; rename it)",
        f"[config] {path}: data.subset_size is now data.images.subset_size (the old key is still read; rename it)"])
    # a later source wins whichever spelling it uses; the new key wins within one file
    assert load_config(path, ["data.loader.batch_size=8"]).data.loader.batch_size == 8
    both = write(tmp_path / "both.yaml", "model: {name: vit_test}\ndata: {name: digits, batch_size: 16, "
                                         "loader: {batch_size: 4}}\n")
    assert load_config(both).data.loader.batch_size == 4
    with pytest.raises(ConfigError, match=r"--opts: data\.batch_siz: unknown key \(did you mean 'loader\.batch_size'"):
        load_config(path, ["data.batch_siz=8"])


def test_checkpoint_config_with_flat_data_keys_loads_silently(tmp_path, capsys):
    cfg = load_config("dfdc_videomae_095", ["data.loader.batch_size=2", "data.faces.methods=[a, b]"])
    old = _flat_data(config_to_dict(cfg))  # as a checkpoint written before the grouping stores it
    assert "batch_size" in old["data"] and "loader" not in old["data"]
    assert config_from_dict(old, source="old.pt") == cfg
    assert config_from_dict(old, source="old.pt", overrides=["data.loader.num_workers=0"]).data.loader.num_workers == 0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))  # an old run folder's config.yaml
    assert load_run_config(tmp_path / "config.yaml") == cfg
    assert capsys.readouterr().err == ""
    assert "batch_size" in old["data"]  # the stored dict is not modified


def test_every_packaged_config_uses_the_grouped_keys(capsys):
    root = packaged_configs()
    for path in root.rglob("*.yaml"):
        if not any(part.startswith("_") for part in path.relative_to(root).parts):
            load_config(path)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("key", sorted(CHOICES))
def test_choice_values_are_checked_when_the_config_loads(key):
    allowed = ", ".join(str(a) for a in CHOICES[key] if a is not None) + (" or null" if None in CHOICES[key] else "")
    with pytest.raises(ConfigError) as e:
        load_config("digits_vit_tiny_ssat", [f"{key}=bogus"])
    assert str(e.value) == f"--opts: {key}: must be one of {allowed}, got 'bogus'"
    for value in CHOICES[key]:
        load_config("digits_vit_tiny_ssat", [f"{key}={'null' if value is None else value}"])


@pytest.mark.parametrize("opts, message", [
    (["train.epochs=0"], "--opts: train.accum_steps, data.loader.batch_size and train.epochs must be >= 1"),
    (["train.blr=-1"], "--opts: train.blr: must be a positive number, got -1.0"),
    (["train.clip_grad=0"], "--opts: train.clip_grad: must be a positive gradient norm or null (no clipping), got 0.0"),
    (["train.warmup_epochs=-1"], "--opts: train.warmup_epochs: must be >= 0, got -1.0"),
    (["train.betas=[0.9]"], "--opts: train.betas: two numbers in [0, 1), got [0.9]"),
    (["train.min_lr=-1e-6"], "--opts: train.min_lr: must be >= 0, got -1e-06"),
    (["train.weight_decay=-0.05"], "--opts: train.weight_decay: must be >= 0, got -0.05"),
    (["model.drop_path_rate=1.5"], "--opts: model.drop_path_rate: must be in [0, 1] or null, got 1.5"),
    (["model.drop_path_rate=-0.1"], "--opts: model.drop_path_rate: must be in [0, 1] or null, got -0.1"),
    (["train.log_every_steps=0"], "--opts: train.log_every_steps: must be >= 1, got 0"),
    (["data.loader.prefetch_factor=2"], "--opts: data.loader.prefetch_factor: 2 needs data.loader.num_workers > 0 "
                                        "and a value >= 1 (or null)"),
    (["data.images.mixup=0.8", "data.loader.batch_size=7"], "--opts: data.loader.batch_size: Mixup / CutMix pair the "
                                                            "items of a batch; 7 is odd"),
])
def test_ranges_are_checked_when_the_config_loads(opts, message):
    with pytest.raises(ConfigError) as e:
        load_config("digits_vit_tiny_ssat", opts)
    assert str(e.value) == message


def test_a_bad_value_names_the_file_that_set_it_and_code_built_configs_are_checked_too(tmp_path):
    path = write(tmp_path / "bad.yaml", "model: {name: vit_test}\ndata: {name: digits, loader: {transfer: fast}}\n")
    with pytest.raises(ConfigError, match=r"^.*bad\.yaml: data\.loader\.transfer: must be one of auto, uint8, float"):
        load_config(path)
    cfg = load_config("digits_vit_tiny_ssat")
    check_config(cfg)
    cfg.train.select = "f1"
    with pytest.raises(ConfigError, match=r"^train\.select: must be one of auto, auc, acc, loss, got 'f1'$"):
        check_config(cfg)
