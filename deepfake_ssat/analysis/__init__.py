"""Analyses of trained encoders: the paper's §5.2 diagnostics (attention distribution, inter-token
distance, feature-map variance, Hessian spectrum), Grad-CAM, attention maps and MAE
reconstructions. ``dfssat-analyze`` (:mod:`deepfake_ssat.commands.analyze`, on :mod:`.runner`) runs them from
checkpoints.

Everything here is analysis-only: hooks are added and removed around each call, and the
training path (fused attention, no hooks) is never changed.
"""
from .gradcam import grad_cam, upsample_map
from .hessian import HessianOperator, hessian_spectrum, lanczos, slq_density, top_eigenvalues, unfused_attention
from .probes import (Capture, attention_distribution, attention_map, capture, explicit_attention, feature_variance,
                     inter_token_distance, require_plain_vit, resolve_blocks)
from .recon import Reconstruction, reconstruct, unpatchify

__all__ = [
    "Capture", "HessianOperator", "Reconstruction", "attention_distribution", "attention_map", "capture",
    "explicit_attention", "feature_variance", "grad_cam", "hessian_spectrum", "inter_token_distance", "lanczos",
    "reconstruct", "require_plain_vit", "resolve_blocks", "slq_density", "top_eigenvalues", "unfused_attention",
    "unpatchify", "upsample_map",
]
