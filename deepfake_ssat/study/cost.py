"""Training cost of runs (paper Table 3): GFLOPs per image, training time and estimated kg CO2-eq.

GFLOPs are counted on one image per forward pass (:func:`gflops_per_image`); CO2 is device hours x power x PUE
x grid intensity, every factor a field of :class:`CarbonFactors` printed beside the result.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ..config import Config, load_run_config
from ..models.flops import count_flops


@dataclass
class CarbonFactors:
    """The numbers behind the CO2 estimate.

    ``energy (kWh) = device hours x device power (kW) x PUE``; ``kg CO2-eq = energy x grid intensity``.
    The defaults give the paper's own arithmetic: its Table 3 equals GPU hours x 0.23 kW (an RTX A5000's
    board power) x 0.432 kg CO2-eq / kWh with a PUE of 1 (e.g. 60 h -> 5.96 kg). Put in your own
    device's power, your data centre's PUE and your grid's intensity.
    """
    device_power_w: float = 230.0  # W per device (NVIDIA RTX A5000 board power, the paper's GPU)
    pue: float = 1.0  # data-centre power usage effectiveness (1 = the paper's figures; ~1.5 typical)
    grid_kg_per_kwh: float = 0.432  # kg CO2-eq per kWh of the grid (the paper's figures)


def carbon_estimate(train_seconds: float, num_devices: int = 1,
                    factors: CarbonFactors = CarbonFactors()) -> dict[str, Any]:
    """Device hours, energy and kg CO2-eq of ``train_seconds`` of wall time on ``num_devices`` devices."""
    device_hours = train_seconds / 3600.0 * num_devices
    energy_kwh = device_hours * factors.device_power_w / 1000.0 * factors.pue
    return {
        "train_hours": train_seconds / 3600.0,
        "num_devices": num_devices,
        "device_hours": device_hours,
        "energy_kwh": energy_kwh,
        "kg_co2eq": energy_kwh * factors.grid_kg_per_kwh,
        "factors": dataclasses.asdict(factors),
        "formula": "kg CO2-eq = train_hours x num_devices x device_power_w / 1000 x pue x grid_kg_per_kwh",
    }


@torch.no_grad()
def gflops_per_image(model: nn.Module, seed: int = 0) -> dict[str, float]:
    """Forward GFLOPs of one image through ``model`` as trained and through its encoder alone.

    Counted by ``torch.utils.flop_counter`` over one forward pass of one image (batch 1), with torch's
    convention of 2 FLOPs per multiply-add. Papers that count with fvcore (as the paper's 1.26 GFLOPs
    for ViT-T at 224 px) report multiply-adds: ``gmacs`` = GFLOPs / 2. The training forward is what
    the run computed per image (SSAT: full pass + masked pass + decoder; MAE pre-training: masked pass
    + decoder; SimCLR / DINO: every view, DINO's teacher included); the inference forward is the
    encoder alone.
    """
    enc = model.encoder
    g = torch.Generator().manual_seed(seed)
    if len(enc.grid_size) == 3:
        shape = (1, enc.in_chans, enc.num_frames, enc.img_size, enc.img_size)
    else:
        shape = (1, enc.in_chans, enc.img_size, enc.img_size)
    x = torch.randn(shape, generator=g)
    y = torch.zeros(1, dtype=torch.int64)
    was_training = model.training
    model.eval()
    try:
        torch.manual_seed(seed)  # the mask draw (its size, hence the count, does not depend on it)
        if model.num_views > 1:  # the wrapper's contract: it trains on views of each image, with labels
            train, _ = count_flops(lambda: model([x] + [x.clone() for _ in range(model.num_views - 1)], y))
        else:
            train, _ = count_flops(lambda: model(x))
        inference, _ = count_flops(lambda: enc(x))
    finally:
        model.train(was_training)
    return {
        "train_forward_gflops": train / 1e9,
        "train_forward_gmacs": train / 2e9,
        "inference_gflops": inference / 1e9,
        "inference_gmacs": inference / 2e9,
    }


def method_name(cfg: Config) -> str:
    lam = cfg.ssat.lam
    if lam == 1.0:
        return "scratch" if not cfg.train.init_from else "fine-tune"
    if lam == 0.0:
        return f"{cfg.ssat.aux} pre-training"
    return f"SSAT ({cfg.ssat.aux}, lam={lam:g})"


def run_cost(run_dir: str | Path) -> dict[str, Any]:
    """GFLOPs, train time and results of one run directory (its ``config.yaml`` and ``summary.json``)."""
    from ..data import num_classes
    from ..engine.build import build_model

    run_dir = Path(run_dir)
    for name in ("config.yaml", "summary.json"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: not found; give run directories written by dfssat-train")
    cfg = load_run_config(run_dir / "config.yaml")
    summary = json.loads((run_dir / "summary.json").read_text())
    if "train_seconds" not in summary:
        raise ValueError(f"{run_dir / 'summary.json'}: no train_seconds (an unfinished run?)")
    n_classes = cfg.model.num_classes or _num_classes_or_default(cfg, num_classes)
    torch.manual_seed(0)
    model = build_model(cfg, n_classes)
    return {
        "run": str(run_dir),
        "method": method_name(cfg),
        "model": cfg.model.name,
        "dataset": cfg.data.name,
        "epochs": cfg.train.epochs,
        **gflops_per_image(model),
        "train_seconds": summary["train_seconds"],
        "num_devices": summary.get("world_size", 1),
        "test_acc1": summary.get("test_acc1"),
        "test_acc1_perturbed": summary.get("test_acc1_perturbed"),
    }


def _num_classes_or_default(cfg: Config, num_classes) -> int:
    """The dataset's class count; 1000 when an ImageFolder tree is not at hand (FLOPs barely depend on it)."""
    try:
        return num_classes(cfg.data.name, cfg.data.root)
    except Exception:
        return 1000


def cost_report(pipelines: list[str], factors: CarbonFactors = CarbonFactors()) -> dict[str, Any]:
    """One row per pipeline: a run directory, or stages joined by ``+`` (SSL then fine-tuning), whose
    GFLOPs are listed per stage (the paper's "0.43+1.26") and whose times and CO2 add up."""
    rows = []
    for spec in pipelines:
        stages = [run_cost(part) for part in spec.split("+")]
        seconds = sum(s["train_seconds"] for s in stages)
        devices = max(s["num_devices"] for s in stages)
        carbon = [carbon_estimate(s["train_seconds"], s["num_devices"], factors) for s in stages]
        last = stages[-1]
        rows.append({
            "pipeline": spec,
            "method": " + ".join(s["method"] for s in stages),
            "train_forward_gflops": "+".join(f"{s['train_forward_gflops']:.3g}" for s in stages),
            "train_forward_gmacs": "+".join(f"{s['train_forward_gmacs']:.3g}" for s in stages),
            "inference_gflops": last["inference_gflops"],
            "train_seconds": seconds,
            "num_devices": devices,
            "device_hours": sum(c["device_hours"] for c in carbon),
            "energy_kwh": sum(c["energy_kwh"] for c in carbon),
            "kg_co2eq": sum(c["kg_co2eq"] for c in carbon),
            "test_acc1": last["test_acc1"],
            "test_acc1_perturbed": last["test_acc1_perturbed"],
            "stages": stages,
        })
    return {
        "factors": dataclasses.asdict(factors),
        "formula": "kg CO2-eq = device_hours x device_power_w / 1000 x pue x grid_kg_per_kwh; "
                   "device_hours = train_seconds / 3600 x num_devices (world size of the run)",
        "flops": "torch.utils.flop_counter, forward pass of one image, 2 FLOPs per multiply-add "
                 "(gmacs = GFLOPs / 2, the convention of the paper's table)",
        "rows": rows,
    }


def format_cost(report: dict[str, Any]) -> str:
    f = report["factors"]
    lines = [f"factors: device power {f['device_power_w']:g} W, PUE {f['pue']:g}, grid {f['grid_kg_per_kwh']:g} "
             f"kg CO2-eq/kWh ({report['formula']})",
             "| method | train GFLOPs (GMACs) / image | device hours | kWh | kg CO2-eq | test top-1 | pipeline |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        acc = "-" if r["test_acc1"] is None else f"{r['test_acc1']:.2f}"
        lines.append(f"| {r['method']} | {r['train_forward_gflops']} ({r['train_forward_gmacs']}) | "
                     f"{r['device_hours']:.4g} | {r['energy_kwh']:.4g} | {r['kg_co2eq']:.4g} | {acc} | "
                     f"{r['pipeline']} |")
    return "\n".join(lines)


