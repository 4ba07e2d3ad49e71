"""Encoders, MAE / SimMIM decoders, masking and the SSAT wrapper."""
from . import cvt, resnet, swin, video_vit, vit  # noqa: F401  (register the factories)
from .decoder import MAEDecoder
from .masking import gather_tokens, random_masking, tube_masking
from .registry import create_model, list_models, register_model
from .ssat import SSAT, SSATOutput, patchify, ssat_loss, videomae_target
from .swin import SimMIMDecoder

__all__ = [
    "MAEDecoder", "SSAT", "SSATOutput", "SimMIMDecoder", "create_model", "gather_tokens", "list_models", "patchify",
    "random_masking", "register_model", "ssat_loss", "tube_masking", "videomae_target",
]
