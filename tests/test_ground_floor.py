"""The command line's ground floor: one device resolver (``auto`` everywhere), commands named as the user ran
them (``dfssat-<command>``, ``python -m deepfake_ssat <command>``, ``python tools/<command>.py``), one-line
errors for bad flags in every command, and library messages that name commands, not checkout paths."""
import ast
import importlib
import re
import subprocess
import sys
from configparser import ConfigParser
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from deepfake_ssat.commands import _cli
from deepfake_ssat.commands._cli import COMMANDS, invoked_as, program, rerun_command, script_name
from deepfake_ssat.runtime import resolve_device


def _console_scripts() -> dict[str, str]:
    """setup.cfg's console scripts: ``dfssat-predict`` -> ``predict`` (the function in deepfake_ssat.commands)."""
    cfg = ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = [line.split("=") for line in cfg["options.entry_points"]["console_scripts"].strip().splitlines()]
    return {name.strip(): target.strip().removeprefix("deepfake_ssat.commands:") for name, target in lines}


def test_every_command_is_a_console_script_and_a_module_command():
    assert _console_scripts() == {script_name(c): c for c in COMMANDS}
    for command in COMMANDS:
        assert callable(importlib.import_module(f"deepfake_ssat.commands.{command}").main)
        assert (ROOT / "tools" / f"{command}.py").is_file()


def _parse_error(command: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``command``'s main on ``argv`` (returned or raised as SystemExit)."""
    main = importlib.import_module(f"deepfake_ssat.commands.{command}").main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


NOTHING_REQUIRED = ("train", "extract_faces", "demo", "demo_digits", "limited_data", "benchmark")  # to argparse


@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_flag_is_one_line_naming_the_command(command, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/" + script_name(command)])
    sub = ["model"] if command == "benchmark" else []
    code, out, err = _parse_error(command, [*sub, "--no-such-flag"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("error: ") and "usage:" not in err, err
    assert err.rstrip().endswith(f"; see {script_name(command)} --help"), err  # (benchmark: argparse's top level)
    # argparse names the missing required arguments before the unknown ones
    want = "unrecognized arguments: --no-such-flag" if command in NOTHING_REQUIRED else "arguments are required: "
    assert want in err, err


@pytest.mark.parametrize("command, argv, flag", [
    ("predict", ["v.mp4", "--checkpoint", "c.pt", "--clips", "four"], "--clips"),
    ("extract_faces", ["in", "--out", "o", "--format", "gif"], "--format"),
    ("benchmark", ["model", "--frames", "x"], "--frames"),
    ("evaluate", ["--checkpoint", "c", "--dataset", "imagenet", "--data-root", "d", "--out", "o"], "--dataset"),
    ("train", ["--max-steps", "1.5"], "--max-steps"),
    ("analyze", ["--checkpoint", "c", "--what", "saliency"], "--what"),
])
def test_a_bad_value_is_one_line_naming_the_flag(command, argv, flag, capsys):
    code, out, err = _parse_error(command, argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith(f"error: argument {flag}"), err
    assert err.rstrip().endswith("--help") and "usage:" not in err


@pytest.mark.parametrize("argv0, words, prog", [
    ("/venv/bin/dfssat-predict", ["dfssat-predict"], "dfssat-predict"),
    ("tools/predict.py", ["python", "tools/predict.py"], "predict.py"),
    ("/home/me/ssat/tools/predict.py", ["python", "/home/me/ssat/tools/predict.py"], "predict.py"),
    ("/venv/bin/dfssat-demo", ["dfssat-predict"], "dfssat-predict"),  # predict run in-process by the demo
    ("/venv/bin/pytest", ["dfssat-predict"], "dfssat-predict"),
])
def test_a_command_is_named_as_it_was_invoked(argv0, words, prog, monkeypatch):
    monkeypatch.setattr(sys, "argv", [argv0, "clip.mp4"])
    assert invoked_as("deepfake_ssat.commands.predict") == words
    assert program("predict") == prog
    assert importlib.import_module("deepfake_ssat.commands.predict").build_parser().prog == prog
    assert rerun_command("predict", None) == [*words, "clip.mp4"]
    assert rerun_command("predict", ["--out", "p.json"]) == [*words, "--out", "p.json"]


def test_python_dash_m_names_every_command_so(monkeypatch):
    monkeypatch.setattr(_cli, "_launched_as_module", True)
    monkeypatch.setattr(sys, "argv", [str(ROOT / "deepfake_ssat/__main__.py"), "extract-faces"])
    assert invoked_as("extract_faces") == ["python", "-m", "deepfake_ssat", "extract-faces"]
    assert program("eval_ff") == "python -m deepfake_ssat eval-ff"
    assert rerun_command("train", ["--resume", "runs/x"]) == ["python", "-m", "deepfake_ssat", "train", "--resume",
                                                               "runs/x"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_python_dash_m_dispatches_to_the_commands():
    helped = _run("-m", "deepfake_ssat", "cost-report", "--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m deepfake_ssat cost-report "), helped
    bad = _run("-m", "deepfake_ssat", "cost_report", "--pue", "high")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1, bad.stderr
    assert bad.stderr.startswith("error: argument --pue: invalid float value: 'high'")
    assert bad.stderr.rstrip().endswith("see python -m deepfake_ssat cost-report --help")
    script = _run("tools/cost_report.py", "--help")
    assert script.returncode == 0 and script.stdout.startswith("usage: cost_report.py "), script.stderr


@pytest.mark.parametrize("argv, problem", [([], "no command given"),
                                           (["predikt", "--help"], "unknown command 'predikt'")])
def test_python_dash_m_without_a_known_command_lists_the_commands(argv, problem):
    done = _run("-m", "deepfake_ssat", *argv)
    assert done.returncode == 2 and done.stdout == "" and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: {problem}; usage: python -m deepfake_ssat <command>")
    listed = done.stderr.rstrip().rpartition("commands: ")[2].split(", ")
    assert listed == [name.removeprefix("dfssat-") for name in _console_scripts()]


def test_auto_is_a_device_and_a_missing_gpu_is_one_line(monkeypatch):
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^--device cuda:1: CUDA is not available on this machine; use cpu$"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match=r"^--device tpu: not a device; use auto, cpu, cuda or cuda:N$"):
        resolve_device("tpu")


def test_extract_faces_takes_auto_and_refuses_a_missing_gpu_in_one_line(tmp_path, capsys, monkeypatch):
    from deepfake_ssat.commands.extract_faces import main as extract_main

    (tmp_path / "in").mkdir()
    argv = [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--allow-empty", "--no-progress"]
    assert extract_main([*argv, "--device", "auto"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert extract_main([*argv, "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --device cuda: CUDA is not available on this machine; use cpu\n"


def test_benchmark_resolves_its_device_before_any_work(capsys, monkeypatch):
    from deepfake_ssat.commands.benchmark import main as bench_main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_main(["faces", "--device", "cuda:0", "--json"]) == 2
    assert capsys.readouterr().err == "error: --device cuda:0: CUDA is not available on this machine; use cpu\n"


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant of ``path`` (f-string parts included) but the docstrings."""
    tree = ast.parse(path.read_text())
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs]


def test_messages_name_commands_not_checkout_paths():
    """An installed user has ``dfssat-extract-faces``, not ``tools/extract_faces.py``: no message, help text or
    hint names a script of the checkout."""
    script = re.compile(rf"\b({'|'.join(COMMANDS)})\.py\b")
    found = [f"{path.relative_to(ROOT)}:{line}: {text[:80]!r}"
             for path in sorted((ROOT / "deepfake_ssat").rglob("*.py")) for line, text in _strings(path)
             if script.search(text)]
    assert found == []
