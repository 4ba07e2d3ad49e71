"""Command-line programs, one module per command: ``build_parser()`` (most) and ``main(argv=None) -> int``.

The functions below are the console scripts (``dfssat-<command>``, setup.cfg), what ``python -m deepfake_ssat
<command>`` runs and what the ``tools/<command>.py`` shims call: each imports its module only when run and ends
through :func:`deepfake_ssat.commands._cli.run_cli` (one line and an exit code, never a traceback).
"""
from __future__ import annotations

import importlib
from typing import Callable, NoReturn

from ._cli import COMMANDS, run_cli


def run_command(module: str, argv: list[str] | None = None) -> NoReturn:
    """Run command ``module`` (``extract_faces``) on ``argv`` (None: this process's arguments) and exit."""
    run_cli(importlib.import_module(f"{__name__}.{module}").main, argv)


def _command(module: str) -> Callable[[], NoReturn]:
    assert module in COMMANDS, module

    def run() -> NoReturn:
        run_command(module)

    run.__name__ = run.__qualname__ = module
    run.__doc__ = f"Run :mod:`{__name__}.{module}` with the process's arguments and exit."
    return run


train = _command("train")
extract_faces = _command("extract_faces")
predict = _command("predict")
eval_ff = _command("eval_ff")
evaluate = _command("evaluate")
export = _command("export")
analyze = _command("analyze")
benchmark = _command("benchmark")
demo = _command("demo")
demo_digits = _command("demo_digits")
limited_data = _command("limited_data")
sweep_lambda = _command("sweep_lambda")
cost_report = _command("cost_report")
