"""The header every benchmark's JSON starts with, spelled once: which benchmark, which code, which command, on what."""
from __future__ import annotations

import os
import platform
import sys
from typing import Any

import torch

from .. import __version__

HEADER_KEYS = ("benchmark", "version", "command", "torch", "python", "device", "cpus")


def run_header(benchmark: str, command: str | None, device: str = "cpu") -> dict[str, Any]:
    """``{benchmark, version, command, torch, python, device, cpus}`` of this run; ``command`` None: this process's
    command line (what reproduces the figures)."""
    return {"benchmark": benchmark, "version": __version__,
            "command": command if command is not None else " ".join([sys.executable, *sys.argv]),
            "torch": str(torch.__version__), "python": platform.python_version(), "device": str(device),
            "cpus": os.cpu_count()}
