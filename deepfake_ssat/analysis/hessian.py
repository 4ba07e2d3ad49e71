"""Hessian spectrum of the training loss w.r.t. the encoder's parameters (the paper's Fig. 9).

Hessian-vector products (double backward, averaged over a few fixed batches) on vectors [P] of the parameter
count give the top-k eigenvalues (power iteration) and the spectral density (stochastic Lanczos quadrature);
no [P, P] matrix is ever built. Cost and memory: :func:`hessian_spectrum`.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..models import SSAT
from .probes import evaluating

LossFn = Callable[[], torch.Tensor]


@contextmanager
def unfused_attention(module: nn.Module) -> Iterator[None]:
    """Make every timm attention module in ``module`` (those with a ``fused_attn`` switch) use its
    explicit, twice differentiable path: fused attention kernels have no double backward. Analysis
    only; training is unaffected."""
    attns = [m for m in module.modules() if hasattr(m, "fused_attn")]
    saved = [m.fused_attn for m in attns]
    try:
        for m in attns:
            m.fused_attn = False
        yield
    finally:
        for m, fused in zip(attns, saved):
            m.fused_attn = fused


class HessianOperator:
    """``v [P] -> H v [P]`` for the mean of ``losses`` (one closure per fixed batch) w.r.t. ``params``.

    Each call re-runs every closure (forward + backward with graph + double backward), so
    memory stays at one batch's double-backward graph. ``calls`` counts HVPs.
    """

    def __init__(self, losses: Sequence[LossFn], params: Sequence[torch.Tensor]):
        self.losses = list(losses)
        self.params = list(params)
        self.num_params = sum(p.numel() for p in self.params)
        self.calls = 0

    def _split(self, v: torch.Tensor) -> list[torch.Tensor]:
        """Flat [P] -> one view per parameter, in its shape."""
        return [chunk.view_as(p) for chunk, p in zip(v.split([p.numel() for p in self.params]), self.params)]

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(v)
        for loss_fn in self.losses:
            with torch.enable_grad():
                grads = torch.autograd.grad(loss_fn(), self.params, create_graph=True)
                dot = sum((g * vi).sum() for g, vi in zip(grads, self._split(v)))
                hv = torch.autograd.grad(dot, self.params)
            out += torch.cat([h.reshape(-1) for h in hv])
        self.calls += 1
        return out / len(self.losses)


def _orthogonalise(v: torch.Tensor, basis: Sequence[torch.Tensor]) -> torch.Tensor:
    """Remove the components of ``v`` [P] along the orthonormal ``basis`` (twice, for stability)."""
    for _ in range(2):
        for u in basis:
            v = v - torch.dot(v, u) * u
    return v


def top_eigenvalues(hvp: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int = 3, max_iters: int = 100,
                    tol: float = 1e-3, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> tuple[list[float], list[torch.Tensor]]:
    """k largest-magnitude eigenvalues of the symmetric operator ``hvp`` on R^dim, in the order found.

    As PyHessian: power iteration on the complement of the eigenvectors already found (deflation); each stops
    when the Rayleigh quotient changes by less than ``tol`` relative. Returns values and unit
    eigenvectors [dim].
    """
    values: list[float] = []
    vectors: list[torch.Tensor] = []
    for _ in range(k):
        v = torch.randn(dim, generator=generator).to(device)
        v = _orthogonalise(v, vectors)
        v = v / v.norm()
        value = 0.0
        for i in range(max_iters):
            hv = _orthogonalise(hvp(v), vectors)
            new = torch.dot(hv, v).item()  # Rayleigh quotient
            v = hv / hv.norm()
            converged = i > 0 and abs(new - value) <= tol * (abs(value) + 1e-12)
            value = new
            if converged:
                break
        values.append(value)
        vectors.append(v)
    return values, vectors


def lanczos(hvp: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor,
            steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` Lanczos iterations from ``v0`` [P] with full re-orthogonalisation.

    Returns the Ritz values [m] and their quadrature weights [m] (squared first components of the
    Ritz vectors; they sum to 1), m <= steps (fewer if the Krylov space is exhausted).
    """
    basis = [v0 / v0.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        w = hvp(basis[j])
        alphas.append(torch.dot(w, basis[j]).item())
        w = _orthogonalise(w, basis)
        beta = w.norm().item()
        if j == steps - 1 or beta < 1e-8 * max(abs(a) for a in alphas + [1.0]):
            break
        betas.append(beta)
        basis.append(w / beta)
    t = torch.diag(torch.tensor(alphas, dtype=torch.float64))  # [m, m] tridiagonal
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        t += torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vecs = torch.linalg.eigh(t)
    return nodes, vecs[0] ** 2


def slq_density(hvp: Callable[[torch.Tensor], torch.Tensor], dim: int, steps: int = 30, probes: int = 3,
                grid_points: int = 200, sigma_fraction: float = 0.01, zero_tol: float = 1e-3,
                generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> dict:
    """Spectral density by stochastic Lanczos quadrature from ``probes`` Rademacher vectors: Ritz values
    of :func:`lanczos` as nodes, squared first components of the Ritz vectors as weights, smoothed
    with a Gaussian kernel.

    Returns ``nodes``/``weights`` per probe, the Gaussian-smoothed density on ``grid`` (width
    ``sigma_fraction`` of the spectrum's range; integrates to ~1), ``near_zero_mass`` (estimated
    fraction of eigenvalues within ``zero_tol`` x the spectral radius of 0: a network's bulk sits
    there and its Ritz node's sign is noise), ``negative_mass`` (fraction below that band),
    ``negative_count_estimate`` (that times dim) and the extreme Ritz values ``min_eigenvalue`` /
    ``max_eigenvalue`` (Lanczos resolves the spectrum's ends first).
    """
    all_nodes, all_weights = [], []
    for _ in range(probes):
        v = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).float().to(device)
        nodes, weights = lanczos(hvp, v, steps)
        all_nodes.append(nodes)
        all_weights.append(weights)
    lo = min(n.min().item() for n in all_nodes)
    hi = max(n.max().item() for n in all_nodes)
    pad = max(hi - lo, 1e-12) * 0.05
    grid = torch.linspace(lo - pad, hi + pad, grid_points, dtype=torch.float64)  # [G]
    sigma = sigma_fraction * max(hi - lo, 1e-12)
    density = torch.zeros_like(grid)
    for nodes, weights in zip(all_nodes, all_weights):
        kernel = torch.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)  # [G, m]
        density += kernel @ weights / (sigma * math.sqrt(2 * math.pi))
    density /= probes
    band = zero_tol * max(abs(lo), abs(hi))
    negative = sum(w[n < -band].sum().item() for n, w in zip(all_nodes, all_weights)) / probes
    near_zero = sum(w[n.abs() <= band].sum().item() for n, w in zip(all_nodes, all_weights)) / probes
    return {
        "nodes": [n.tolist() for n in all_nodes],
        "weights": [w.tolist() for w in all_weights],
        "grid": grid.tolist(),
        "density": density.tolist(),
        "near_zero_mass": near_zero,
        "negative_mass": negative,
        "negative_count_estimate": negative * dim,
        "min_eigenvalue": lo,
        "max_eigenvalue": hi,
    }


def model_losses(model: SSAT, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], loss: str = "cls",
                 seed: int = 0) -> list[LossFn]:
    """One loss closure per fixed batch ``(x, y)``: ``"cls"`` = plain cross-entropy of the encoder,
    ``"joint"`` = SSAT's joint loss with a mask fixed per batch (seeded; needs the decoder)."""
    if loss == "joint" and model.decoder is None:
        raise ValueError("the joint loss needs the MAE decoder, but this checkpoint has none")
    if loss not in ("cls", "joint"):
        raise ValueError(f"loss must be 'cls' or 'joint', got {loss!r}")

    def make(x: torch.Tensor, y: torch.Tensor, batch_seed: int) -> LossFn:
        if loss == "cls":
            return lambda: F.cross_entropy(model.encoder(x), y)

        def joint() -> torch.Tensor:
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(batch_seed)
                return model.loss(model(x), x, y)[0]
        return joint

    return [make(x, y, seed + i) for i, (x, y) in enumerate(batches)]


def hessian_spectrum(model: SSAT, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], loss: str = "cls",
                     topk: int = 3, power_iters: int = 100, steps: int = 30, probes: int = 3,
                     seed: int = 0) -> dict:
    """Top-``topk`` eigenvalues (at most ``power_iters`` HVPs each) and the SLQ density (``probes``
    x ``steps`` HVPs) of the ``loss`` Hessian w.r.t. the encoder's parameters on ``batches`` (model
    in eval mode: no dropout / drop-path). Reports the HVP counts and wall time.

    Cost for ViT-B/16 at 224 px (an estimate from FLOPs, not a measurement): one forward pass is
    ~35 GFLOPs per image and one HVP ~6 forward passes (forward, backward with graph, double
    backward), ~0.2 TFLOPs per image. With 32 images, top-3 at ~30 iterations each plus 3 SLQ
    probes of 30 steps (~180 HVPs; at most 390 with 100 power iterations each) that is ~1.2 PFLOPs:
    a few minutes on one modern GPU, hours on a desktop CPU. Lanczos keeps its basis on the
    parameters' device: ``steps * P * 4`` bytes (~10 GB for 30 steps of ViT-B's 86 M parameters).
    """
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    op = HessianOperator(model_losses(model, batches, loss, seed), params)
    device = params[0].device
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with evaluating(model), unfused_attention(model):
        top, _ = top_eigenvalues(op, op.num_params, topk, power_iters, generator=gen, device=device)
        top_calls = op.calls
        density = slq_density(op, op.num_params, steps, probes, generator=gen, device=device)
    return {
        "loss": loss,
        "num_params": op.num_params,
        "num_batches": len(batches),
        "top_eigenvalues": top,
        **density,
        "hvp_calls": {"top": top_calls, "slq": op.calls - top_calls},
        "seconds": time.perf_counter() - start,
    }
