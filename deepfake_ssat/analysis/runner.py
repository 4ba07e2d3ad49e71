"""The analyses of ``dfssat-analyze`` (:mod:`deepfake_ssat.commands.analyze`), apart from its argument parsing.

Checkpoints loaded for analysis (:class:`Loaded`), fixed (seeded) samples ``x`` [N, C, (T,) H, W]
(:class:`Samples`), and one ``run_<what>`` per analysis writing ``<out>/<what>.png`` and returning its JSON.
Cost (ViT-B/16, 224 px, 32 samples): seconds on a GPU for all but the Hessian, a few minutes for the Hessian.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Callable

import torch

from ..config import Config, config_from_dict
from ..data import build_datasets
from ..engine import build_model, load_checkpoint
from ..engine.weights import CLASSIFIER_WEIGHTS
from ..models import SSAT
from . import plots
from .gradcam import grad_cam, upsample_map
from .hessian import hessian_spectrum
from .probes import (attention_distribution, attention_map, capture, feature_variance, inter_token_distance,
                     resolve_blocks)
from .recon import reconstruct

ANALYSES = ("attention", "distance", "variance", "hessian", "gradcam", "recon", "attnmap")
SHOW = 4  # samples drawn in the image figures (clips: the first one)


@dataclasses.dataclass
class Loaded:
    """A checkpoint ready for analysis: ``name`` labels it in plots and JSON."""
    name: str
    model: SSAT
    cfg: Config


@dataclasses.dataclass
class Samples:
    """The fixed samples: ``x`` [N, C, (T,) H, W], ``y`` [N], and where they came from."""
    x: torch.Tensor
    y: torch.Tensor
    info: dict


def load_for_analysis(path: str | Path, device: torch.device) -> tuple[SSAT, Config]:
    """SSAT model (eval mode) from a training checkpoint; one without decoder weights (scratch,
    or stripped for inference) is built without a decoder."""
    ckpt = load_checkpoint(path, device)
    if not {"config", "model"} <= ckpt.keys():
        raise ValueError(f"{path}: not a deepfake_ssat checkpoint (needs 'config' and 'model' entries)")
    state = ckpt["model"]
    cfg = config_from_dict(ckpt["config"], source=str(path))
    if cfg.ssat.aux != "mae":  # SimCLR / DINO runs: analyse the encoder (+ head); the aux heads are not needed
        state = {k: v for k, v in state.items() if k.startswith("encoder.")}
    has_decoder = any(k.startswith("decoder.") for k in state)
    cfg = config_from_dict(ckpt["config"], source=str(path),
                           overrides=[] if has_decoder else ["decoder=null", "ssat.lam=1.0", "ssat.aux=mae"])
    head = next((f"encoder.{k}" for k in CLASSIFIER_WEIGHTS if f"encoder.{k}" in state), None)
    if head is None:
        raise ValueError(f"{path}: no classifier weights ({', '.join(CLASSIFIER_WEIGHTS)}) in the checkpoint's encoder")
    model = build_model(cfg, state[head].shape[0])
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not fit the model its config builds "
                         f"({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), cfg


def checkpoint_names(paths: list[Path]) -> list[str]:
    """Parent folder names (the run names); else ``folder/file``; else full paths, whichever is unique."""
    resolved = [p.resolve() for p in paths]
    for label in (lambda p: p.parent.name, lambda p: f"{p.parent.name}/{p.stem}", str):
        names = [label(p) for p in resolved]
        if len(set(names)) == len(names):
            return names
    raise ValueError("--checkpoint: the same checkpoint is given twice")


def fixed_samples(cfg: Config, encoder: torch.nn.Module, split: str, n: int, seed: int) -> Samples:
    """``n`` items of ``split`` (no augmentation) chosen by ``seed``, in index order."""
    data = dataclasses.replace(cfg.data, augment=False)
    datasets = build_datasets(data, encoder.img_size, encoder.in_chans, encoder.num_frames)
    if split not in datasets:
        raise ValueError(f"--split {split}: dataset {data.name} has splits {', '.join(datasets)}")
    ds = datasets[split]
    if len(ds) == 0:
        raise ValueError(f"--split {split}: dataset {data.name} has no items in that split")
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:n].sort().values.tolist()
    items = [ds[i] for i in idx]
    x = torch.stack([torch.as_tensor(item[0]) for item in items])  # [N, C, (T,) H, W]
    y = torch.tensor([int(item[1]) for item in items])
    return Samples(x, y, {"data": data.name, "split": split, "seed": seed, "indices": idx})


# ---------------------------------------------------------------------------------------------
# One function per analysis: (checkpoints, samples, args, out dir) -> JSON payload; writes the PNG.


def _batches(s: Samples, size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.to(device), y.to(device)) for x, y in zip(s.x.split(size), s.y.split(size))]


def _probe(ck: Loaded, s: Samples, args: argparse.Namespace, device: torch.device) -> dict:
    """Attention distribution, distances and variances of one checkpoint over all samples."""
    enc = ck.model.encoder
    blocks = resolve_blocks(args.blocks, len(enc.blocks))
    col_sums = {b: 0.0 for b in blocks}
    dist, var = [], []
    for x, _ in _batches(s, args.batch_size, device):
        cap = capture(enc, x, blocks)
        for b in blocks:
            col_sums[b] = col_sums[b] + attention_distribution(cap.attention[b]) * x.shape[0]
        dist.append(torch.stack([inter_token_distance(t) for t in cap.tokens], dim=1))  # [B, depth]
        var.append(torch.stack([feature_variance(t) for t in cap.tokens], dim=1))  # [B, depth]
    n = len(s.y)
    return {
        "attention": {str(b): (v / n).tolist() for b, v in col_sums.items()},
        "distance": torch.cat(dist).mean(dim=0).tolist(),
        "variance": torch.cat(var).mean(dim=0).tolist(),
    }


def run_probes(what: list[str], ckpts: list[Loaded], s: Samples, args: argparse.Namespace,
               device: torch.device, out: Path) -> dict[str, dict]:
    """attention / distance / variance from one probed pass per checkpoint.

    The probes (attnmap too) are one forward pass of the samples: ~1 TFLOPs for 32 samples of
    ViT-B/16 at 224 px (an estimate from FLOPs, not measured)."""
    found = {ck.name: _probe(ck, s, args, device) for ck in ckpts}
    payloads = {}
    if "attention" in what:
        plots.plot_attention({k: {int(b): v for b, v in r["attention"].items()} for k, r in found.items()},
                             out / "attention.png")
        payloads["attention"] = {"statistic": "attention column sums, mean over heads and samples, sorted",
                                 "checkpoints": {k: {"blocks": r["attention"]} for k, r in found.items()}}
    for key, label in (("distance", "mean pairwise token distance"), ("variance", "feature-map variance")):
        if key in what:
            plots.plot_per_block({k: r[key] for k, r in found.items()}, label, out / f"{key}.png")
            payloads[key] = {"statistic": label + ", per block output, mean over samples",
                             "checkpoints": {k: {"per_block": r[key]} for k, r in found.items()}}
    return payloads


def run_hessian(ckpts: list[Loaded], s: Samples, args: argparse.Namespace, device: torch.device,
                out: Path) -> dict:
    """Hessian spectrum per checkpoint: ~180 HVPs with the defaults (~1.2 PFLOPs for 32 samples of
    ViT-B/16 at 224 px; see :func:`~deepfake_ssat.analysis.hessian.hessian_spectrum`)."""
    results, skipped = {}, {}
    for ck in ckpts:
        if args.hessian_loss == "joint" and ck.model.decoder is None:
            skipped[ck.name] = "no decoder: the joint loss needs one"
            print(f"hessian: skipped {ck.name}: no decoder in the checkpoint, the joint loss needs one",
                  file=sys.stderr)
            continue
        results[ck.name] = hessian_spectrum(ck.model, _batches(s, args.batch_size, device), args.hessian_loss,
                                            args.topk, args.power_iters, args.lanczos_steps, args.probes, args.seed)
    if results:
        plots.plot_hessian(results, out / "hessian.png")
    return {"checkpoints": results, "skipped": skipped}


def run_gradcam(ckpts: list[Loaded], s: Samples, args: argparse.Namespace, device: torch.device,
                out: Path) -> dict:
    """Grad-CAM per checkpoint: one forward/backward on the first ``SHOW`` (4) samples."""
    x = s.x[:SHOW].to(device)
    maps, payload = {}, {}
    for ck in ckpts:
        cam, target = grad_cam(ck.model.encoder, x, layer=args.layer)
        maps[ck.name] = upsample_map(cam, ck.model.encoder)
        payload[ck.name] = {"target": target.tolist(), "cam": cam.tolist()}
    plots.plot_maps(s.x[:SHOW], maps, "Grad-CAM", out / "gradcam.png")
    return {"layer": args.layer, "labels": s.y[:SHOW].tolist(), "target": "predicted class",
            "cam_grid": "token grid (h, w) or (t, h, w), not normalised", "checkpoints": payload}


def run_attnmap(ckpts: list[Loaded], s: Samples, args: argparse.Namespace, device: torch.device,
                out: Path) -> dict:
    x = s.x[:SHOW].to(device)
    maps, payload = {}, {}
    for ck in ckpts:
        enc = ck.model.encoder
        last = len(enc.blocks) - 1
        grid_map, kind = attention_map(enc, capture(enc, x, [last]).attention[last])
        maps[ck.name] = upsample_map(grid_map, enc)
        payload[ck.name] = {"kind": kind, "map": grid_map.tolist()}
    plots.plot_maps(s.x[:SHOW], maps, "last-block attention", out / "attnmap.png")
    return {"checkpoints": payload}


def run_recon(ckpts: list[Loaded], s: Samples, args: argparse.Namespace, device: torch.device,
              out: Path) -> dict:
    x = s.x[:SHOW].to(device)
    recs, payload, skipped = {}, {}, {}
    for ck in ckpts:
        if ck.model.decoder is None:
            skipped[ck.name] = "no decoder (scratch or stripped checkpoint)"
            print(f"recon: skipped {ck.name}: the checkpoint has no MAE decoder (scratch or stripped)",
                  file=sys.stderr)
            continue
        rec = reconstruct(ck.model, x, args.seed)
        recs[ck.name] = rec
        payload[ck.name] = {"masked_patch_mse": rec.loss, "mask_ratio": ck.model.mask_ratio,
                            "prediction_space": "per-patch standardised" if rec.standardised else "pixels"}
    if recs:
        plots.plot_recon(s.x[:SHOW], recs, out / "recon.png")
    return {"checkpoints": payload, "skipped": skipped}


RUNNERS: dict[str, Callable[..., dict]] = {
    "hessian": run_hessian, "gradcam": run_gradcam, "attnmap": run_attnmap, "recon": run_recon}


# ---------------------------------------------------------------------------------------------


