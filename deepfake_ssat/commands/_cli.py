"""How every command-line tool starts and ends: its name as the user invoked it, one ``error:`` line and exit 2
for bad input (a bad flag included), one ``interrupted:`` line and exit 130 for Ctrl-C, never a traceback.

A command runs three ways, and its ``--help``, its errors and its "continue with:" hints name the one used:
``dfssat-predict`` (the console script), ``python -m deepfake_ssat predict`` (:mod:`deepfake_ssat.__main__`)
and ``python tools/predict.py`` (a checkout's shim). A command called in-process (the demo calling
extraction, a test) is named by its console script, the name an installed user has.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Callable, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MODULE_LAUNCHER = ("python", "-m", "deepfake_ssat")

# the command modules, in the order the package lists them; the console script is dfssat-<name with - for _>
COMMANDS = ("train", "extract_faces", "predict", "eval_ff", "evaluate", "export", "analyze", "benchmark", "demo",
            "demo_digits", "limited_data", "sweep_lambda", "cost_report")

_launched_as_module = False  # set by ``python -m deepfake_ssat``


def _one_line(error: BaseException | str, limit: int = 500) -> str:
    """The message's last non-empty line (an error from a DataLoader worker arrives under the worker's
    traceback), cut to ``limit`` characters; the exception's type name when it has no message."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1].strip() if lines else type(error).__name__
    return text[:limit]


def command_name(module: str) -> str:
    """``predict`` / ``extract_faces`` from a command module's name (``deepfake_ssat.commands.extract_faces``)."""
    return module.rpartition(".")[2]


def cli_name(module: str) -> str:
    """The name a user types after ``dfssat-`` or ``python -m deepfake_ssat``: ``extract-faces``."""
    return command_name(module).replace("_", "-")


def script_name(module: str) -> str:
    """The console script of a command: ``dfssat-extract-faces`` (setup.cfg)."""
    return f"dfssat-{cli_name(module)}"


def launch_as_module() -> None:
    """Record that this process is ``python -m deepfake_ssat <command>``: commands then name themselves so."""
    global _launched_as_module
    _launched_as_module = True


def invoked_as(module: str) -> list[str]:
    """The words that run command ``module`` the way this process was started, arguments left out.

    ``python -m deepfake_ssat predict``; ``python tools/predict.py`` when this process is that script (as typed);
    else ``dfssat-predict``: the console script itself, and any command run in-process by another one.
    """
    if _launched_as_module:
        return [*MODULE_LAUNCHER, cli_name(module)]
    started = sys.argv[0] if sys.argv else ""
    if os.path.basename(started) == f"{command_name(module)}.py":
        return ["python", started]
    return [script_name(module)]


def program(module: str) -> str:
    """argparse's ``prog`` for command ``module``: ``predict.py`` for the script (argparse's own habit),
    else the words of :func:`invoked_as` (``dfssat-predict``, ``python -m deepfake_ssat predict``)."""
    words = invoked_as(module)
    if words[:1] == ["python"] and words[1:2] != ["-m"]:
        return os.path.basename(words[1])
    return " ".join(words)


def rerun_command(module: str, argv: list[str] | None) -> list[str]:
    """The command a user reruns to continue: :func:`invoked_as` + ``argv`` (None: this process's arguments)."""
    return [*invoked_as(module), *(sys.argv[1:] if argv is None else argv)]


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``error: <what>; see <command> --help``, exit 2: a user
    who mistyped a flag reads what is wrong, not argparse's usage block. ``command`` (a command module's
    ``__name__``) names the parser as the user invoked it (:func:`program`); sub-parsers inherit the class."""

    def __init__(self, *args, command: str | None = None, **kwargs) -> None:
        if command is not None and "prog" not in kwargs and not args:
            kwargs["prog"] = program(command)
        super().__init__(*args, **kwargs)
        self.invocation = shlex.join(invoked_as(command)) if command is not None else self.prog

    def usage_line(self, message: str) -> str:
        """``<message>; see <command> --help`` on one line, the command as the user runs it."""
        return f"{_one_line(message)}; see {self.invocation} --help"

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {self.usage_line(message)}\n")


def fail(error: BaseException | str, code: int = EXIT_USAGE) -> int:
    """Print ``error: <one line>`` on stderr; returns ``code`` for ``sys.exit``."""
    print(f"error: {_one_line(error)}", file=sys.stderr, flush=True)
    return code


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``nan`` / ``inf`` / 0 are one ``error:`` line, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


RUN_FILES = ("config.yaml", "summary.json", "metrics.csv", "data_manifest.json")  # what dfssat-train writes


def clobbers_run(out: str | os.PathLike, checkpoint: str | os.PathLike) -> str | None:
    """Why writing ``out`` would destroy the run of ``checkpoint`` (the checkpoint itself, a ``.pt`` or a file
    dfssat-train writes in its folder), or None."""
    target, source = Path(out).resolve(), Path(checkpoint).resolve()
    if target == source:
        return f"--out {out}: is the --checkpoint itself; refusing to overwrite it"
    if target.parent == source.parent and (target.suffix == ".pt" or target.name in RUN_FILES):
        return f"--out {out}: is a file of the training run beside --checkpoint; refusing to overwrite it"
    return None


def interrupted(kept: str, command: list[str] | None = None) -> int:
    """Print one line on Ctrl-C: what was kept and, if given, the command that continues the work."""
    again = f"; continue with: {shlex.join(command)}" if command else ""
    print(f"\ninterrupted: {kept}{again}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> NoReturn:
    """Run a command's ``main`` and exit with its code; a Ctrl-C or bad input that ``main`` did not
    handle itself still ends in one line (130 / 2), never a traceback."""
    try:
        code = main(argv)
    except KeyboardInterrupt:
        code = interrupted("stopped before anything was kept")
    except (ValueError, OSError) as e:  # ConfigError and the package's one-line errors are ValueErrors
        code = fail(e)
    sys.exit(code)
