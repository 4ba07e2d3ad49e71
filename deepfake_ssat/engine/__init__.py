"""Training engine: model building, optimisation, checkpoints, inference weights, evaluation."""
from .build import build_encoder, build_model
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import TrainingDiverged, fit, validate
from .weights import load_inference_model, strip_decoder

__all__ = [
    "TrainingDiverged", "build_encoder", "build_model", "validate", "fit", "load_checkpoint",
    "load_inference_model", "save_checkpoint", "strip_decoder",
]
