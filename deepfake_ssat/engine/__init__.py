"""Training engine: model building, optimisation, checkpoints, evaluation."""
from .build import build_encoder, build_model
from .checkpoint import load_checkpoint, load_inference_model, save_checkpoint, strip_decoder
from .trainer import TrainingDiverged, evaluate, fit

__all__ = [
    "TrainingDiverged", "build_encoder", "build_model", "evaluate", "fit", "load_checkpoint",
    "load_inference_model", "save_checkpoint", "strip_decoder",
]
