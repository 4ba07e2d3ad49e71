"""Matplotlib figures for the analyses; one PNG per analysis, checkpoints overlaid or side by side.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas directly: no pyplot, so no
display, no global backend choice and no figure left open.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .recon import Reconstruction


def _figure(rows: int = 1, cols: int = 1, figsize: tuple[float, float] = (4.2, 3.0)) -> tuple[Figure, np.ndarray]:
    """A figure on an Agg canvas and its ``rows x cols`` array of axes."""
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _display(img: torch.Tensor) -> np.ndarray:
    """One image [C, H, W] -> [H, W] (grey, first channel unless C == 3) or [H, W, 3], min-max scaled."""
    img = img.detach().float().cpu()
    img = img.permute(1, 2, 0) if img.shape[0] == 3 else img[0]  # [H, W, 3] or [H, W]
    lo, hi = img.min(), img.max()
    return ((img - lo) / (hi - lo).clamp_min(1e-12)).numpy()


def _masked(img: torch.Tensor, removed: torch.Tensor) -> np.ndarray:
    """[C, H, W] with the removed pixels [C, H, W] painted mid-grey."""
    out = _display(img)
    gone = (removed.permute(1, 2, 0) if removed.shape[0] == 3 else removed[0]).cpu().numpy()
    out[gone] = 0.5
    return out


def _imshow(ax: Axes, img: np.ndarray, title: str | None = None, overlay: np.ndarray | None = None) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    if overlay is not None:
        ax.imshow(overlay, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    if title:
        ax.set_title(title, fontsize=7)
    ax.axis("off")


def _grid(rows: int, cols: int) -> tuple[Figure, np.ndarray]:
    return _figure(rows, cols, figsize=(1.6 * cols, 1.6 * rows))


def plot_attention(dist: dict[str, dict[int, list[float]]], path: Path) -> None:
    """Sorted attention column sums: one panel per block, one line per checkpoint."""
    blocks = sorted({b for per in dist.values() for b in per})
    fig, axes = _figure(1, len(blocks), figsize=(3.2 * len(blocks), 2.8))
    for ax, b in zip(axes[0], blocks):
        for name, per in dist.items():
            if b in per:
                ax.plot(per[b], label=name)
        ax.set_yscale("log")
        ax.set_title(f"block {b}")
        ax.set_xlabel("token rank")
    axes[0, 0].set_ylabel("attention received (column sum)")
    axes[0, -1].legend(fontsize=7)
    _save(fig, path)


def plot_per_block(values: dict[str, list[float]], ylabel: str, path: Path) -> None:
    """A per-block statistic, one line per checkpoint."""
    fig, ((ax,),) = _figure(figsize=(4.2, 3.0))
    for name, v in values.items():
        ax.plot(range(len(v)), v, marker="o", label=name)
    ax.set_xlabel("block")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_hessian(results: dict[str, dict], path: Path) -> None:
    """Top eigenvalues (left) and the SLQ spectral density (right, log scale), per checkpoint."""
    fig, ((top, dens),) = _figure(1, 2, figsize=(8.4, 3.0))
    for name, r in results.items():
        top.plot(range(1, len(r["top_eigenvalues"]) + 1), r["top_eigenvalues"], marker="o", label=name)
        dens.semilogy(r["grid"], np.maximum(r["density"], 1e-12), label=name)
    top.xaxis.set_major_locator(MaxNLocator(integer=True))
    top.set_xlabel("rank (by magnitude)")
    top.set_ylabel("eigenvalue")
    top.set_title("top Hessian eigenvalues")
    dens.set_xlabel("eigenvalue")
    dens.set_ylabel("density")
    dens.set_title("spectral density (SLQ)")
    dens.axvline(0.0, color="k", lw=0.5)
    dens.legend(fontsize=7)
    _save(fig, path)


def plot_maps(x: torch.Tensor, maps: dict[str, torch.Tensor], title: str, path: Path) -> None:
    """Heat maps in [0, 1] overlaid on the inputs.

    Images ``x`` [B, C, H, W], maps [B, H, W]: rows = samples, columns = input + one per checkpoint.
    Clips ``x`` [B, C, T, H, W], maps [B, T, H, W]: the first clip; rows = input + one per
    checkpoint, columns = frames.
    """
    names = list(maps)
    if x.ndim == 4:
        fig, axes = _grid(x.shape[0], 1 + len(names))
        for i in range(x.shape[0]):
            img = _display(x[i])
            _imshow(axes[i, 0], img, "input" if i == 0 else None)
            for j, name in enumerate(names):
                _imshow(axes[i, 1 + j], img, f"{name}: {title}" if i == 0 else None, maps[name][i].cpu().numpy())
    else:
        frames = x.shape[2]
        fig, axes = _grid(1 + len(names), frames)
        for t in range(frames):
            img = _display(x[0, :, t])
            _imshow(axes[0, t], img, f"input t={t}")
            for j, name in enumerate(names):
                _imshow(axes[1 + j, t], img, f"{name}: {title}" if t == 0 else None, maps[name][0, t].cpu().numpy())
    _save(fig, path)


def _recon_panels(rec: Reconstruction, name: str) -> list[tuple[str, torch.Tensor, bool]]:
    """(label, tensor in the input's shape, is-a-mask) per shown column, for one checkpoint."""
    pred = "prediction\n(per-patch standardised)" if rec.standardised else "prediction"
    panels = [(f"{name}:\nmasked input", rec.removed, True), (f"{name}: {pred}", rec.prediction, False)]
    if rec.with_true_stats is not None:
        panels.append((f"{name}: prediction\n+ true patch mean/std\n(display only)", rec.with_true_stats, False))
    return panels


def plot_recon(x: torch.Tensor, recs: dict[str, Reconstruction], path: Path) -> None:
    """Input, masked input and reconstruction(s) per checkpoint.

    Images ``x`` [B, C, H, W]: rows = samples, columns = input + the checkpoints' panels.
    Clips ``x`` [B, C, T, H, W]: the first clip as a per-frame strip; rows = input + the
    checkpoints' panels, columns = frames.
    """
    panels = [p for name, rec in recs.items() for p in _recon_panels(rec, name)]

    def cell(ax: Axes, pick, panel: tuple[str, torch.Tensor, bool], title: bool) -> None:
        label, tensor, is_mask = panel
        img = _masked(pick(x), pick(tensor)) if is_mask else _display(pick(tensor))
        _imshow(ax, img, label if title else None)

    if x.ndim == 4:
        fig, axes = _grid(x.shape[0], 1 + len(panels))
        for i in range(x.shape[0]):
            _imshow(axes[i, 0], _display(x[i]), "input" if i == 0 else None)
            for j, panel in enumerate(panels):
                cell(axes[i, 1 + j], lambda t, i=i: t[i], panel, i == 0)
    else:
        fig, axes = _grid(1 + len(panels), x.shape[2])
        for f in range(x.shape[2]):
            _imshow(axes[0, f], _display(x[0, :, f]), f"input t={f}")
            for j, panel in enumerate(panels):
                cell(axes[1 + j, f], lambda t, f=f: t[0, :, f], panel, f == 0)
    _save(fig, path)
