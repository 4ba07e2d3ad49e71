"""Multi-run studies: the lambda sweep (paper Fig. 3) and the digits fidelity study (scratch vs SSAT
over several seeds); ``dfssat-sweep-lambda`` and ``dfssat-digits-study`` are their front ends.

Each run trains into its own folder with :func:`~deepfake_ssat.engine.fit`; a folder that already
holds a ``summary.json`` is reused, so an interrupted study continues where it stopped.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

from ..config import ConfigError, dump_config, load_config



def _train(config: str | Path, opts: list[str], out: Path) -> tuple[dict, bool]:
    """fit() the config into ``out``: reuse the summary of a finished run there, resume an unfinished one.

    A run folder written with another config is an error (pick another output folder)."""
    from ..engine import fit

    cfg = load_config(config, opts)
    saved = out / "config.yaml"
    if saved.is_file() and saved.read_text() != dump_config(cfg):
        raise ConfigError(f"{out}: holds a run with another config; remove it or choose another --out")
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text()), True
    resume = out / "last.pt" if (out / "last.pt").is_file() else None
    return fit(cfg, out, resume=resume), False


def _mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """Mean and sample standard deviation (n - 1; 0 for one value) of the non-None values."""
    xs = [v for v in values if v is not None]
    if not xs:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


# ---------------------------------------------------------------------------------------------
# Lambda sweep (Fig. 3)


def sweep_lambda(config: str | Path, lams: Sequence[float], out_root: str | Path, opts: Sequence[str] = (),
                 seeds: Sequence[int] = (0,)) -> dict[str, Any]:
    """Train ``config`` once per ``ssat.lam`` in ``lams`` (and seed); ``lam = 1`` is the scratch baseline
    (no decoder built), ``lam = 0`` the auxiliary task alone (no accuracy). Writes ``out_root/sweep.json``."""
    out_root = Path(out_root)
    for lam in lams:
        if not 0.0 <= lam <= 1.0:
            raise ConfigError(f"--lams: every lambda must be in [0, 1], got {lam}")
    rows = []
    for lam in lams:
        for seed in seeds:
            out = out_root / f"lam{lam:g}" / f"seed{seed}"
            summary, reused = _train(config, [*opts, f"ssat.lam={lam}", f"train.seed={seed}"], out)
            rows.append({"lam": lam, "seed": seed, "run": str(out), "reused": reused,
                         "best_val_acc1": summary.get("best_val_acc1"), "test_acc1": summary.get("test_acc1"),
                         "test_acc1_perturbed": summary.get("test_acc1_perturbed"),
                         "train_seconds": summary.get("train_seconds")})
    per_lam = {f"{lam:g}": {"test_acc1": _mean_std([r["test_acc1"] for r in rows if r["lam"] == lam]),
                            "best_val_acc1": _mean_std([r["best_val_acc1"] for r in rows if r["lam"] == lam])}
               for lam in lams}
    scored = {k: v["best_val_acc1"]["mean"] for k, v in per_lam.items() if v["best_val_acc1"]["mean"] is not None}
    result = {"config": str(config), "opts": list(opts), "lams": list(lams), "seeds": list(seeds), "runs": rows,
              "per_lam": per_lam, "best_lam_on_val": max(scored, key=scored.get) if scored else None}
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "sweep.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_sweep(result: dict[str, Any]) -> str:
    lines = ["| lambda | best val top-1 (%) | test top-1 (%) | runs |", "|---|---|---|---|"]
    for lam, v in result["per_lam"].items():
        val, test = v["best_val_acc1"], v["test_acc1"]
        lines.append(f"| {lam} | {_pm(val)} | {_pm(test)} | {test['n'] or val['n']} |")
    lines.append(f"best lambda on validation: {result['best_lam_on_val']}")
    return "\n".join(lines)


def _pm(stat: dict) -> str:
    return "-" if stat["mean"] is None else f"{stat['mean']:.2f} ± {stat['std']:.2f}"


# ---------------------------------------------------------------------------------------------
# Digits fidelity study


DIGITS_VARIANTS = {
    "scratch": ("digits_vit_tiny_scratch.yaml", []),
    "ssat": ("digits_vit_tiny_ssat.yaml", []),
}
GOAL_POINTS = 2.0  # SSAT should beat scratch by this many test top-1 points


def digits_study(out_root: str | Path, epochs: int | None = 20, seeds: Sequence[int] = (0, 1, 2),
                 opts: Sequence[str] = (), variants: dict[str, tuple[Path, list[str]]] | None = None,
                 command: str | None = None) -> dict[str, Any]:
    """Scratch and SSAT ViTs on digits (``configs/image/digits/digits_vit_tiny_*``), same epochs, every seed;
    extra ``variants`` (name -> (config, overrides)) run beside them. Writes ``out_root/study.json``.

    Seeds vary the initialisation, augmentation and batch order; the data split stays fixed
    (``data.split_seed``). Mean and sample standard deviation over the seeds of each variant.
    """
    out_root = Path(out_root)
    variants = {**DIGITS_VARIANTS, **(variants or {})}
    common = [*opts] + ([f"train.epochs={epochs}"] if epochs else [])
    rows = []
    for seed in seeds:
        for name, (config, extra) in variants.items():
            out = out_root / name / f"seed{seed}"
            t0 = time.perf_counter()
            summary, reused = _train(config, [*common, *extra, f"train.seed={seed}"], out)
            rows.append({"variant": name, "seed": seed, "config": str(config), "opts": [*common, *extra],
                         "run": str(out), "reused": reused, "best_val_acc1": summary.get("best_val_acc1"),
                         "test_acc1": summary.get("test_acc1"), "train_seconds": summary.get("train_seconds"),
                         "wall_seconds": round(time.perf_counter() - t0, 1)})
            print(f"[study] {name} seed {seed}: test top-1 {summary.get('test_acc1')}"
                  f"{' (reused)' if reused else ''}", flush=True)
    stats = {name: {"test_acc1": _mean_std([r["test_acc1"] for r in rows if r["variant"] == name]),
                    "best_val_acc1": _mean_std([r["best_val_acc1"] for r in rows if r["variant"] == name]),
                    "train_seconds": _mean_std([r["train_seconds"] for r in rows if r["variant"] == name])}
             for name in variants}
    scratch = stats["scratch"]["test_acc1"]["mean"]
    gaps = {name: (s["test_acc1"]["mean"] - scratch if scratch is not None and s["test_acc1"]["mean"] is not None
                   else None) for name, s in stats.items() if name != "scratch"}
    paired = {name: _mean_std([a["test_acc1"] - b["test_acc1"] for a in rows if a["variant"] == name
                               for b in rows if b["variant"] == "scratch" and b["seed"] == a["seed"]])
              for name in variants if name != "scratch"}
    result = {
        "study": "digits: ViT scratch vs ViT + SSAT, same epochs",
        "command": command,
        "epochs": epochs, "seeds": list(seeds), "opts": list(opts),
        "std": "sample standard deviation over seeds (n - 1)",
        "runs": rows, "stats": stats,
        "minus_scratch_test_acc1": gaps,
        "paired_minus_scratch_test_acc1": paired,
        "goal": f"ssat test top-1 mean >= scratch mean + {GOAL_POINTS:g} points",
        "goal_met": gaps.get("ssat") is not None and gaps["ssat"] >= GOAL_POINTS,
    }
    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "study.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def format_study(result: dict[str, Any]) -> str:
    lines = [f"digits, {result['epochs']} epochs, seeds {result['seeds']} (mean ± sample std)",
             "| variant | test top-1 (%) | best val top-1 (%) | minus scratch (paired) | train s |",
             "|---|---|---|---|---|"]
    for name, s in result["stats"].items():
        gap = result["paired_minus_scratch_test_acc1"].get(name)
        lines.append(f"| {name} | {_pm(s['test_acc1'])} | {_pm(s['best_val_acc1'])} | "
                     f"{'-' if gap is None else _pm(gap)} | {s['train_seconds']['mean']:.0f} |")
    lines.append(f"goal ({result['goal']}): {'met' if result['goal_met'] else 'NOT met'}")
    return "\n".join(lines)


