"""The package as a user installs it: a wheel built from this checkout, installed away from it.

Every console script answers ``--help``, every packaged config loads by name, ``python -m deepfake_ssat`` runs a
command, and a run cut short and resumed through the installed ``dfssat-train`` ends on the weights of an
uninterrupted one. The checkout is not on the path: only the installed files are imported.
"""
from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT

SETUP = configparser.ConfigParser()
SETUP.read(ROOT / "setup.cfg")
SCRIPTS = [line.split("=")[0].strip() for line in SETUP["options.entry_points"]["console_scripts"].splitlines()
           if line.strip()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    """``{"site", "bin", "env", "cwd"}`` of a wheel of this checkout installed with ``pip install --target``."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(ROOT / "deepfake_ssat", src / "deepfake_ssat", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (tmp / "dist").glob("deepfake_ssat-*.whl")
    site = tmp / "site"
    done = subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(site)  # before the checkout's editable install on sys.path
    cwd = tmp / "work"
    cwd.mkdir()
    return {"site": site, "bin": site / "bin", "env": env, "cwd": cwd}


def _run(installed: dict, cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=installed["env"], cwd=installed["cwd"], capture_output=True, text=True,
                          timeout=timeout)


def test_the_installed_package_is_what_runs(installed):
    found = _run(installed, [sys.executable, "-c", "import deepfake_ssat; print(deepfake_ssat.__file__)"])
    assert found.returncode == 0, found.stderr
    assert Path(found.stdout.strip()).is_relative_to(installed["site"])


def test_every_console_script_answers_help(installed):
    assert len(SCRIPTS) == 13
    for script in SCRIPTS:
        done = _run(installed, [str(installed["bin"] / script), "--help"])
        assert done.returncode == 0, f"{script}: {done.stderr[-1000:]}"
        assert done.stdout.startswith(f"usage: {script}"), f"{script}: {done.stdout[:200]}"


def test_every_packaged_config_loads_by_name_from_the_wheel(installed):
    names = sorted(str(p.relative_to(ROOT / "deepfake_ssat/configs").with_suffix(""))
                   for p in (ROOT / "deepfake_ssat/configs").rglob("*.yaml")
                   if not any(part.startswith("_") for part in p.relative_to(ROOT).parts))  # bases are partial
    assert len(names) > 100
    code = ("import json, sys; from deepfake_ssat.config import load_config\n"
            "names = json.loads(sys.argv[1]); [load_config(n) for n in names]; print(len(names))")
    done = _run(installed, [sys.executable, "-c", code, json.dumps(names)])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(len(names))


def test_a_resume_through_the_installed_train_is_exact(installed, tmp_path):
    """2 + 2 updates (cut, then ``--resume``) == 4 updates, by a packaged config named bare; the cut run is
    resumed through ``python -m deepfake_ssat train``."""
    train = str(installed["bin"] / "dfssat-train")
    opts = ["--opts", "train.epochs=1", "data.loader.batch_size=16", "decoder.depth=1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for out, steps in ((whole, "4"), (cut, "2")):
        done = _run(installed, [train, "--config", "digits_vit_tiny_ssat", *opts, "--max-steps", steps,
                                "--out", str(out)])
        assert done.returncode == 0, done.stderr[-2000:]
    done = _run(installed, [sys.executable, "-m", "deepfake_ssat", "train", "--resume", str(cut), "--max-steps", "4"])
    assert done.returncode == 0, done.stderr[-2000:]
    weights = [torch.load(out / "last.pt", map_location="cpu", weights_only=True)["model"] for out in (whole, cut)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
