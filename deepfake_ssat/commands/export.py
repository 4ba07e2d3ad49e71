"""``dfssat-export`` / ``tools/export.py``: a checkpoint's encoder + head as safetensors (to share),
ONNX, TorchScript or ``torch.export``, checked against PyTorch (:mod:`deepfake_ssat.inference.export`)."""
from __future__ import annotations

import json
from pathlib import Path

from ..inference.export import EXPORT_FORMATS, SUFFIXES, ExportMismatch, export_model
from ._cli import CommandParser, clobbers_run, fail, interrupted, rerun_command


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on a checked export; 2 on a usage error (checkpoint, format, missing exporter package);
    1 when the export does not match PyTorch."""
    parser = CommandParser(
        command=__name__, description="Export a checkpoint's encoder + head (clips -> logits, dynamic batch) and "
                                      "check it against PyTorch on random clips; prints a JSON summary.")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt / last.pt)")
    parser.add_argument("--out", required=True, type=Path,
                        help="output file (.safetensors [+ .json beside it], .onnx, .pt / .ts, .pt2)")
    parser.add_argument("--format", choices=EXPORT_FORMATS,
                        help="safetensors (weights + JSON config: to share a detector), onnx (needs onnx, "
                             "onnxscript, onnxruntime: pip install -e .[dev]), torchscript or pt2 (torch.export); "
                             "default from the --out suffix")
    parser.add_argument("--crop-scale", type=float,
                        help="face crop of the training data (dfssat-extract-faces --crop-scale), recorded beside a "
                             "safetensors export (default: the one the checkpoint records, else 1.3)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted |difference| (default 1e-4)")
    args = parser.parse_args(argv)
    fmt = args.format or SUFFIXES.get(args.out.suffix.lower())
    if fmt is None:
        parser.error(f"--format is needed: cannot tell it from {args.out.name!r} (.safetensors, .onnx, .pt, .ts, .pt2)")
    if problem := clobbers_run(args.out, args.checkpoint):
        return fail(problem)
    try:
        result = export_model(args.checkpoint, args.out, fmt, atol=args.atol, crop_scale=args.crop_scale)
    except ModuleNotFoundError as e:
        return fail(f"{e.name} is not installed; ONNX export needs onnx, onnxscript and onnxruntime "
                    f"(pip install -e .[dev])")
    except (FileNotFoundError, ValueError, OSError) as e:
        return fail(e)
    except ExportMismatch as e:
        return fail(e, code=1)
    except KeyboardInterrupt:
        return interrupted(f"the export to {args.out} may be incomplete", rerun_command(__name__, argv))
    print(json.dumps(result))
    return 0

