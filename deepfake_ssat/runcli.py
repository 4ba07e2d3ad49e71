"""How every command-line tool ends: one ``error:`` line and exit 2 for bad input, one ``interrupted:``
line and exit 130 for Ctrl-C, never a traceback for either."""
from __future__ import annotations

import shlex
import sys
from typing import Callable, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of ``error``'s message, cut to ``limit`` characters; its type name when it has none."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def _one_line(error: BaseException | str, limit: int = 500) -> str:
    """The message's last non-empty line (an error from a DataLoader worker arrives under the worker's
    traceback), cut to ``limit`` characters; the exception's type name when it has no message."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1].strip() if lines else type(error).__name__
    return text[:limit]


def fail(error: BaseException | str, code: int = EXIT_USAGE) -> int:
    """Print ``error: <one line>`` on stderr; returns ``code`` for ``sys.exit``."""
    print(f"error: {_one_line(error)}", file=sys.stderr, flush=True)
    return code


def interrupted(kept: str, command: list[str] | None = None) -> int:
    """Print one line on Ctrl-C: what was kept and, if given, the command that continues the work."""
    again = f"; continue with: {shlex.join(command)}" if command else ""
    print(f"\ninterrupted: {kept}{again}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def tool_command(tool: str, argv: list[str] | None) -> list[str]:
    """``python tools/<tool> ARGS``: the command a user reruns (``argv`` None = this process's arguments)."""
    return ["python", f"tools/{tool}", *(sys.argv[1:] if argv is None else argv)]


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
