from pathlib import Path

import pytest

from deepfake_ssat.config import Config, ConfigError, config_from_dict, config_to_dict, dump_config, load_config

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_shipped_digits_configs_load():
    ssat = load_config(ROOT / "configs/digits_vit_tiny_ssat.yaml")
    scratch = load_config(ROOT / "configs/digits_vit_tiny_scratch.yaml")
    assert ssat.decoder is not None and ssat.ssat.lam == 0.1
    assert scratch.decoder is None and scratch.ssat.lam == 1.0
    assert scratch.model == ssat.model and scratch.train == ssat.train and scratch.data == ssat.data


def test_base_inheritance_and_overrides(tmp_path):
    write(tmp_path / "base.yaml", "model: {name: vit_test}\ndata: {name: digits, batch_size: 16}\n"
                                  "train: {epochs: 3}\ndecoder: null\nssat: {lam: 1.0}\n")
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\ntrain: {blr: 0.002}\ndecoder: {depth: 4}\n")
    cfg = load_config(child, ["train.epochs=7", "ssat.mask_ratio=0.95", "ssat.lam=0.1"])
    assert cfg.train.epochs == 7 and cfg.train.blr == 0.002  # base key kept, child key, override
    assert cfg.data.batch_size == 16
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
    cfg = load_config(ROOT / "configs/digits_vit_tiny_ssat.yaml", ["train.epochs=3"])
    assert config_from_dict(config_to_dict(cfg)) == cfg
    again = load_config(write(tmp_path / "dumped.yaml", dump_config(cfg)))
    assert again == cfg and isinstance(again, Config)
