"""Export the inference encoder + head of a checkpoint to ONNX, TorchScript or ``torch.export`` (.pt2).

The exported graph maps normalised face clips ``clips [B, 3, T, S, S]`` float32 (batch axis dynamic)
to ``logits [B, 2]``; ``softmax(logits)[:, 1]`` is the fake probability. Clips are built as
:func:`deepfake_ssat.inference.clip_tensor` builds them (ImageNet mean/std, RGB). Every export is
reloaded and checked against the PyTorch model on a clip batch of another size than the traced one.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

FORMATS = ("onnx", "torchscript", "pt2")
SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "pt2"}
INPUT_NAME, OUTPUT_NAME = "clips", "logits"


class ExportMismatch(RuntimeError):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


def _export_onnx(encoder: nn.Module, example: torch.Tensor, path: Path):
    """ONNX (torch.export-based exporter; needs ``onnx`` and ``onnxscript``); returns a runner on numpy
    input, backed by ``onnxruntime``."""
    import onnxruntime

    torch.onnx.export(encoder, (example,), str(path), dynamo=True, input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])


def _export_torchscript(encoder: nn.Module, example: torch.Tensor, path: Path):
    """TorchScript by tracing (deprecated by PyTorch in favour of torch.export, still supported)."""
    torch.jit.save(torch.jit.trace(encoder, example), str(path))
    return torch.jit.load(str(path), map_location="cpu")


def _export_pt2(encoder: nn.Module, example: torch.Tensor, path: Path):
    """``torch.export`` program saved with ``torch.export.save``; reload with ``torch.export.load(p).module()``."""
    program = torch.export.export(encoder, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return torch.export.load(str(path)).module()


def export_model(checkpoint: str | Path, out_path: str | Path, format: str = "onnx",
                 clip: torch.Tensor | None = None, atol: float = 1e-4) -> dict:
    """Export ``checkpoint``'s encoder + head to ``out_path`` and check it against PyTorch.

    ``clip``: [B, 3, T, S, S] float32 check input (default: 3 random clips, seed 0; the export itself
    is traced on 2). Returns ``path``, ``format``, ``input``/``output`` names and shapes (``-1`` = dynamic
    batch), ``img_size``, ``num_frames``, ``mean``/``std`` of the input normalisation and
    ``max_abs_diff`` on the check clip; raises :class:`ExportMismatch` when that is ``>= atol``.
    """
    from .data.faceclips import IMAGENET_MEAN, IMAGENET_STD
    from .engine.checkpoint import load_inference_model
    from .inference import model_geometry

    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    encoder, cfg = load_inference_model(checkpoint, "cpu")
    img_size, num_frames = model_geometry(encoder, cfg)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, num_frames, img_size, img_size, generator=generator)
    if clip is None:
        clip = torch.randn(3, 3, num_frames, img_size, img_size, generator=generator)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    exporter = {"onnx": _export_onnx, "torchscript": _export_torchscript, "pt2": _export_pt2}[format]
    with torch.no_grad():
        reference = encoder(clip)
        exported = exporter(encoder, example, out_path)
        diff = float((exported(clip).float() - reference).abs().max())
    if not np.isfinite(diff) or diff >= atol:
        raise ExportMismatch(f"{out_path}: exported {format} model differs from PyTorch by {diff:.3g} (>= {atol:g})")
    return {"path": str(out_path), "format": format, "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": [-1, 3, num_frames, img_size, img_size], "output_shape": [-1, int(reference.shape[1])],
            "img_size": img_size, "num_frames": num_frames, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "checked_batch": int(clip.shape[0]), "max_abs_diff": diff}


def export_main(argv: list[str] | None = None) -> int:
    """Exit 0 on a checked export; 2 on a usage error (checkpoint, format, missing exporter package);
    1 when the export does not match PyTorch."""
    parser = argparse.ArgumentParser(
        prog="export.py", description="Export a checkpoint's encoder + head (clips -> logits, dynamic batch) and "
                                      "check it against PyTorch on random clips; prints a JSON summary.")
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (best.pt / last.pt)")
    parser.add_argument("--out", required=True, type=Path, help="output file (.onnx, .pt / .ts, .pt2)")
    parser.add_argument("--format", choices=FORMATS,
                        help="onnx (needs onnx, onnxscript, onnxruntime: pip install -e .[dev]), torchscript "
                             "or pt2 (torch.export); default from the --out suffix")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted |difference| (default 1e-4)")
    args = parser.parse_args(argv)
    fmt = args.format or SUFFIXES.get(args.out.suffix.lower())
    if fmt is None:
        parser.error(f"--format is needed: cannot tell it from {args.out.name!r} (.onnx, .pt, .ts, .pt2)")
    try:
        result = export_model(args.checkpoint, args.out, fmt, atol=args.atol)
    except ModuleNotFoundError as e:
        print(f"error: {e.name} is not installed; ONNX export needs onnx, onnxscript and onnxruntime "
              f"(pip install -e .[dev])", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {str(e).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except ExportMismatch as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0
