"""A non-editable install: console scripts and packaged configs work from any directory."""
import json
import subprocess
import sys

import pytest
from conftest import ROOT


@pytest.mark.slow
def test_non_editable_install_trains_from_an_unrelated_directory(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                            "--no-index", "--target", str(site), str(ROOT)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    assert (site / "deepfake_ssat" / "configs").is_dir() and not (site / "deepfake_ssat" / "configs").is_symlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(site), "HOME": str(tmp_path)}
    where = subprocess.run([sys.executable, "-c", "import deepfake_ssat; print(deepfake_ssat.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr  # the installed copy, not the checkout
    run = subprocess.run([str(site / "bin" / "dfssat-train"), "--config", "digits_vit_tiny_ssat.yaml",
                          "--opts", "train.epochs=1", "--out", "run"],
                         cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["test_acc1"] is not None
    assert (elsewhere / "run" / "best.pt").is_file()
    missing = subprocess.run([str(site / "bin" / "dfssat-train"), "--config", "no_such_config"],
                             cwd=elsewhere, env=env, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "config file not found" in missing.stderr
