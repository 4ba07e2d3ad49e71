"""``python -m deepfake_ssat <command> [ARGS]``: every console script without installing it (a checkout, a
container without the ``dfssat-*`` scripts on ``PATH``). ``python -m deepfake_ssat predict ARGS`` runs what
``dfssat-predict ARGS`` runs; the command names itself so in its ``--help``, errors and rerun hints."""
from __future__ import annotations

import sys
from typing import NoReturn

from .commands import run_command
from .commands._cli import COMMANDS, EXIT_USAGE, MODULE_LAUNCHER, cli_name, launch_as_module


def _usage() -> str:
    """One line: how to call this and which commands there are."""
    return (f"usage: {' '.join(MODULE_LAUNCHER)} <command> [ARGS] (<command> --help for its options); "
            f"commands: {', '.join(cli_name(c) for c in COMMANDS)}")


def main(argv: list[str] | None = None) -> NoReturn:
    """Dispatch ``argv[0]`` (``extract-faces``; ``extract_faces`` is accepted too) to its command; no command
    or an unknown one: one line listing the commands, exit 2 (``--help``: the same line, exit 0)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["-h"], ["--help"]):
        print(_usage())
        sys.exit(0)
    module = argv[0].replace("-", "_") if argv else None
    if module not in COMMANDS:
        problem = f"unknown command {argv[0]!r}; " if argv else "no command given; "
        print(f"error: {problem}{_usage()}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    launch_as_module()
    run_command(module, argv[1:])


if __name__ == "__main__":
    main()
