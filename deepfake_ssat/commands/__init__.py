"""Command-line programs, one module per command: ``build_parser()`` (most) and ``main(argv=None) -> int``.

The functions below are the console scripts (``dfssat-<command>``, setup.cfg) and what the
``tools/<command>.py`` shims call: each imports its module only when run and ends through
:func:`deepfake_ssat.runcli.run_cli` (one line and an exit code, never a traceback).
"""
from __future__ import annotations

import importlib
from typing import Callable, NoReturn

from ..runcli import run_cli


def _command(module: str) -> Callable[[], NoReturn]:
    def run() -> NoReturn:
        run_cli(importlib.import_module(f"{__name__}.{module}").main)

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
digits_study = _command("digits_study")
sweep_lambda = _command("sweep_lambda")
cost_report = _command("cost_report")
