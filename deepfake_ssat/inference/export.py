"""Export a checkpoint's inference encoder + head: safetensors (to share), ONNX, TorchScript, ``torch.export``.

The exported graph maps normalised face clips ``clips [B, 3, T, S, S]`` float32 (batch axis dynamic) to
``logits [B, 2]``; ``softmax(logits)[:, 1]`` is the fake probability. Every export is reloaded and checked
against the PyTorch model (:func:`export_model`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn


EXPORT_FORMATS = ("safetensors", "onnx", "torchscript", "pt2")
SUFFIXES = {".safetensors": "safetensors", ".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript", ".pt2": "pt2"}
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


def detector_preprocessing(img_size: int, num_frames: int, crop_scale: float, extraction: dict | None) -> dict:
    """What a user must do to a video before the model sees it (written beside a safetensors export).
    ``extraction``: the training store's extraction parameters (None: unknown), which ``Detector`` crops faces by."""
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..faces.store import JPEG_QUALITY, store_format

    crop = "square of side max(w, h) x crop_scale centred on the face box, resized to img_size"
    if extraction is not None and "crop_size" in extraction:
        jpeg = store_format(extraction) in ("tar", "jpg")
        crop = ("square of side max(w, h) x crop_scale centred on the face box, resized to extraction.crop_size"
                + (f", JPEG-encoded at quality {JPEG_QUALITY} and decoded" if jpeg else "") + ", then to img_size")
    return {"input": "clips [B, 3, T, S, S] float32 RGB: uint8 / 255, then (x - mean) / std per channel",
            "img_size": img_size, "num_frames": num_frames, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "face_detector": "facenet-pytorch MTCNN", "crop_scale": crop_scale, "crop": crop,
            "extraction": extraction,
            "output": "logits [B, 2]; softmax(logits)[:, 1] = fake probability", "labels": ["REAL", "FAKE"]}


def _export_safetensors(encoder: nn.Module, cfg, path: Path, crop_scale: float, extraction: dict | None):
    """``<stem>.safetensors`` + ``<stem>.json`` (:func:`~deepfake_ssat.engine.weights.save_detector`),
    reloaded through the same loader that predict uses.

    The weights (which cannot carry code) and a JSON beside them with the model config, the preprocessing
    and the weights' sha256: the way to publish a trained detector; ``Detector`` /
    ``dfssat-predict --checkpoint`` and ``train.init_from`` read it back."""
    from ..config import config_to_dict
    from ..engine.weights import load_inference_model, save_detector
    from .detector import model_geometry

    tree = config_to_dict(cfg)  # only what rebuilds the model: no data paths of the training machine
    config = {"model": tree["model"], "ssat": tree["ssat"], "data": {"name": tree["data"]["name"]}}
    save_detector(path, encoder.state_dict(), config, detector_preprocessing(*model_geometry(encoder, cfg),
                                                                               crop_scale, extraction))
    return load_inference_model(path, "cpu")[0]


def export_model(checkpoint: str | Path, out_path: str | Path, format: str = "onnx",
                 clip: torch.Tensor | None = None, atol: float = 1e-4, crop_scale: float | None = None) -> dict:
    """Export ``checkpoint``'s encoder + head to ``out_path`` and check it against PyTorch.

    ``clip``: [B, 3, T, S, S] float32 check input (default: 3 random clips, seed 0; the export itself
    is traced on 2). Returns ``path``, ``format``, ``input``/``output`` names and shapes (``-1`` = dynamic
    batch), ``img_size``, ``num_frames``, ``mean``/``std`` of the input normalisation and
    ``max_abs_diff`` on the check clip; raises :class:`ExportMismatch` when that is ``>= atol``.
    A safetensors export records beside the weights how the training data's faces were cropped (the
    checkpoint's extraction parameters, when it has them); ``crop_scale`` overrides theirs (default: the
    training extraction's, else 1.3).
    Clips are built as :func:`deepfake_ssat.data.transforms.clip_tensor` builds them (ImageNet mean/std, RGB).
    """
    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD
    from ..engine.weights import inference_model, read_inference_checkpoint, training_extraction
    from .detector import model_geometry

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    ckpt = read_inference_checkpoint(checkpoint, "cpu")
    encoder, cfg = inference_model(ckpt, checkpoint)
    extraction = training_extraction(ckpt, checkpoint)
    if crop_scale is not None:
        extraction = {**(extraction or {}), "crop_scale": crop_scale}
    elif extraction is not None and isinstance(extraction.get("crop_scale"), (int, float)):
        crop_scale = extraction["crop_scale"]
    crop_scale = 1.3 if crop_scale is None else crop_scale
    img_size, num_frames = model_geometry(encoder, cfg)
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, num_frames, img_size, img_size, generator=generator)
    if clip is None:
        clip = torch.randn(3, 3, num_frames, img_size, img_size, generator=generator)
    out_path = Path(out_path).with_suffix(".safetensors") if format == "safetensors" else Path(out_path)
    if out_path.is_dir():
        raise ValueError(f"{out_path}: is a folder; --out names the file to write")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        reference = encoder(clip)
        if format == "safetensors":
            exported = _export_safetensors(encoder, cfg, out_path, crop_scale, extraction)
        else:
            exporter = {"onnx": _export_onnx, "torchscript": _export_torchscript, "pt2": _export_pt2}[format]
            exported = exporter(encoder, example, out_path)
        diff = float((exported(clip).float() - reference).abs().max())
    if not np.isfinite(diff) or diff >= atol:
        raise ExportMismatch(f"{out_path}: exported {format} model differs from PyTorch by {diff:.3g} (>= {atol:g})")
    extra = {"config": str(out_path.with_suffix(".json"))} if format == "safetensors" else {}
    return {"path": str(out_path), "format": format, **extra, "input": INPUT_NAME, "output": OUTPUT_NAME,
            "input_shape": [-1, 3, num_frames, img_size, img_size], "output_shape": [-1, int(reference.shape[1])],
            "img_size": img_size, "num_frames": num_frames, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
            "checked_batch": int(clip.shape[0]), "max_abs_diff": diff}


