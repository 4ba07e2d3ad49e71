"""Multi-run studies: the lambda sweep (paper Fig. 3) and the limited-data study (scratch vs SSAT over
training-set fractions and seeds, paper Table 1's claim); ``dfssat-sweep-lambda`` and ``dfssat-limited-data``
are their front ends.

Each run trains into its own folder with :func:`~deepfake_ssat.engine.fit`; a folder that already
holds a ``summary.json`` is reused, so an interrupted study continues where it stopped.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..config import Config, ConfigError, config_from_dict, find_config, flat_config, load_config
from ..io import atomic_write, atomic_write_json, atomic_write_text, first_line


def _train(config: str | Path, opts: list[str], out: Path) -> tuple[dict, bool]:
    """fit() the config into ``out``: reuse the summary of a finished run there, resume an unfinished one.

    A run folder written with another config is an error (pick another output folder)."""
    from ..engine import fit

    cfg = load_config(config, opts)
    saved = out / "config.yaml"
    if saved.is_file():
        differ = _first_difference(saved, cfg)
        if differ:
            raise ConfigError(f"{out}: holds a run with another config ({differ}); remove it or choose another --out")
    if (out / "summary.json").is_file():
        return json.loads((out / "summary.json").read_text()), True
    resume = out / "last.pt" if (out / "last.pt").is_file() else None
    return fit(cfg, out, resume=resume), False


def _first_difference(saved: Path, cfg: Config) -> str | None:
    """The first key whose value differs between the run config stored at ``saved`` and ``cfg`` (``key: stored
    vs now``), None when equal. Read as a stored config: keys added since take their defaults, so a study
    continues across versions that only added settings."""
    try:
        stored = config_from_dict(yaml.safe_load(saved.read_text()) or {}, str(saved))
    except (ConfigError, yaml.YAMLError) as e:
        return first_line(e)
    if stored == cfg:
        return None
    theirs, ours = flat_config(stored), flat_config(cfg)
    key = next(k for k in sorted(theirs.keys() | ours.keys()) if theirs.get(k) != ours.get(k))
    return f"{key}: {theirs.get(key)!r} there, {ours.get(key)!r} now"


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
# Limited-data study: scratch vs SSAT over training-set fractions and seeds


VARIANTS = ("scratch", "ssat")  # a recipe R is the pair of configs R_scratch, R_ssat
GOAL_POINTS = 2.0  # SSAT should beat scratch by this many test top-1 points (mean over seeds) ...
GOAL_FRACTION = 0.1  # ... with this fraction of the training set (the CIFAR-10 goal)


def recipe_configs(recipe: str) -> dict[str, Path]:
    """``{"scratch": R_scratch, "ssat": R_ssat}``: the two configs of recipe ``R`` (packaged names or paths
    without the ``_scratch`` / ``_ssat.yaml`` ending), e.g. ``cifar10_vit_tiny_cpu``."""
    stem = recipe[:-5] if recipe.endswith((".yaml", ".yml")) else recipe
    found = {}
    for variant in VARIANTS:
        try:
            found[variant] = find_config(f"{stem}_{variant}")
        except ConfigError:
            raise ConfigError(f"--recipe {recipe}: no config {stem}_{variant} (a recipe is a pair of configs "
                              f"<recipe>_scratch and <recipe>_ssat, e.g. cifar10_vit_tiny_cpu)") from None
    return found


def training_sizes(config: str | Path, opts: Sequence[str], fractions: Sequence[float]) -> tuple[int, int, dict]:
    """``(N, pool, {fraction: images})``: the training images of ``config``'s dataset before a validation part is
    held out of them (N), those left to train on (pool), and the training-set size each fraction of N gives (the
    pool at most: fraction 1 trains on the whole pool).

    A fraction below the pool is drawn as ``data.images.subset_size`` (fixed-seed, class-stratified, the same
    images for every seed and both variants); the validation and test splits never change.
    """
    from ..data import build_datasets

    for f in fractions:
        if not 0.0 < f <= 1.0:
            raise ConfigError(f"--fractions: every fraction must be in (0, 1], got {f:g}")
    cfg = load_config(config, [*opts, "data.images.subset_fraction=null", "data.images.subset_size=null"])
    split = build_datasets(cfg.data, 8, cfg.model.in_chans or 3)
    train, val = split["train"], split["val"]
    held_out = getattr(val, "base", None) is not None and val.base is getattr(train, "base", None)
    pool = len(train)
    full = pool + len(val) if held_out or not hasattr(val, "base") else pool  # digits: val is a part of its pool
    return full, pool, {f: min(pool, max(1, round(f * full))) for f in fractions}


def limited_data_study(recipe: str, out_root: str | Path, fractions: Sequence[float] = (1.0,),
                       seeds: Sequence[int] = (0, 1, 2), epochs: int | None = None, opts: Sequence[str] = (),
                       variants: dict[str, list[str]] | None = None, command: str | None = None) -> dict[str, Any]:
    """Train the recipe's scratch and SSAT configs (and SSAT ``variants``: name -> overrides) at each training-set
    fraction and seed, same epochs; writes ``study.json``, ``study.md`` and ``study.png`` in ``out_root`` after
    every run, so a killed study shows what it finished and the same call continues it (finished runs are read
    back, an unfinished one resumes from its ``last.pt``).

    Runs go fraction by fraction, seed by seed, every variant of a seed in turn: the first pairs are complete
    early. Seeds vary initialisation, augmentation, masks and batch order; the data split stays fixed.
    """
    out_root = Path(out_root)
    configs = recipe_configs(recipe)
    named = {**{v: (configs[v], []) for v in VARIANTS},
             **{name: (configs["ssat"], list(extra)) for name, extra in (variants or {}).items()}}
    common = [*opts] + ([f"train.epochs={epochs}"] if epochs else [])
    full, pool, sizes = training_sizes(configs["scratch"], common, fractions)
    result = {"study": f"{recipe}: scratch vs SSAT, same epochs, over training-set fractions", "recipe": recipe,
              "configs": {n: str(c) for n, (c, _) in named.items()}, "command": command, "epochs": epochs,
              "opts": list(opts), "seeds": list(seeds), "fractions": list(fractions), "full_training_set": full,
              "training_images": {f"{f:g}": n for f, n in sizes.items()}, "runs": []}
    for f in fractions:
        subset = [f"data.images.subset_size={sizes[f]}"] if sizes[f] < pool else []
        for seed in seeds:
            for name, (config, extra) in named.items():
                out = out_root / name / f"frac{f:g}" / f"seed{seed}"
                t0 = time.perf_counter()
                summary, reused = _train(config, [*common, *subset, *extra, f"train.seed={seed}"], out)
                result["runs"].append({
                    "variant": name, "fraction": f, "training_images": sizes[f], "seed": seed, "run": str(out),
                    "reused": reused, "best_val_acc1": summary.get("best_val_acc1"),
                    "test_acc1": summary.get("test_acc1"), "train_seconds": summary.get("train_seconds"),
                    "wall_seconds": round(time.perf_counter() - t0, 1)})
                print(f"[study] {name}, {sizes[f]} images (fraction {f:g}), seed {seed}: test top-1 "
                      f"{summary.get('test_acc1')}{' (reused)' if reused else ''}", flush=True)
                write_study(result, out_root)
    return write_study(result, out_root)


def study_stats(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``stats`` (per fraction, per variant: mean ± sample std of test and best-val top-1),
    ``minus_scratch`` (per fraction, per variant: SSAT - scratch test top-1 paired by seed, mean ± std) and the
    goal (:data:`GOAL_POINTS` at :data:`GOAL_FRACTION`; None until measured)."""
    runs, stats, gaps = result["runs"], {}, {}
    names = list(result["configs"])
    for f in result["fractions"]:
        at = [r for r in runs if r["fraction"] == f]
        stats[f"{f:g}"] = {n: {k: _mean_std([r[k] for r in at if r["variant"] == n])
                               for k in ("test_acc1", "best_val_acc1", "train_seconds")} for n in names}
        base = {r["seed"]: r["test_acc1"] for r in at if r["variant"] == "scratch" and r["test_acc1"] is not None}
        gaps[f"{f:g}"] = {n: _mean_std([r["test_acc1"] - base[r["seed"]] for r in at if r["variant"] == n
                                        and r["seed"] in base and r["test_acc1"] is not None])
                          for n in names if n != "scratch"}
    goal = gaps.get(f"{GOAL_FRACTION:g}", {}).get("ssat")
    measured = goal is not None and goal["n"] > 0
    return {**result, "std": "sample standard deviation over seeds (n - 1)", "stats": stats, "minus_scratch": gaps,
            "goal": f"ssat - scratch test top-1 >= {GOAL_POINTS:g} points (mean over seeds) at fraction "
                    f"{GOAL_FRACTION:g}",
            "goal_met": goal["mean"] >= GOAL_POINTS if measured else None}


def write_study(result: dict[str, Any], out_root: Path) -> dict[str, Any]:
    """Write ``study.json``, ``study.md`` (:func:`format_study`) and ``study.png`` (:func:`study_png`) atomically;
    returns the result with its statistics."""
    result = study_stats(result)
    out_root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_root / "study.json", result)
    atomic_write_text(out_root / "study.md", format_study(result) + "\n")
    study_png(result, out_root / "study.png")
    return result


def format_study(result: dict[str, Any]) -> str:
    """The study as a markdown table: one row per fraction and variant, test top-1 mean ± std over seeds and the
    paired difference to scratch."""
    epochs = result["epochs"] or "the configs'"
    lines = [f"{result['recipe']}, {epochs} epochs, seeds {result['seeds']}; test top-1 (%) of the best-on-validation "
             f"weights, mean ± sample std over seeds", "",
             "| training images (fraction) | variant | test top-1 | best val top-1 | minus scratch (paired) | seeds "
             "| train s |", "|---|---|---|---|---|---|---|"]
    for f, per in result["stats"].items():
        for name, s in per.items():
            gap = result["minus_scratch"][f].get(name)
            secs = s["train_seconds"]["mean"]
            lines.append(f"| {result['training_images'][f]} ({f}) | {name} | {_pm(s['test_acc1'])} | "
                         f"{_pm(s['best_val_acc1'])} | {'-' if gap is None else _pm(gap)} | {s['test_acc1']['n']} | "
                         f"{'-' if secs is None else f'{secs:.0f}'} |")
    met = {True: "met", False: "NOT met", None: "not measured yet"}[result["goal_met"]]
    lines += ["", f"goal ({result['goal']}): {met}"]
    return "\n".join(lines)


def study_png(result: dict[str, Any], path: Path) -> None:
    """Test top-1 against training-set size: one line of means per variant, each seed a point."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for i, name in enumerate(result["configs"]):
        runs = [r for r in result["runs"] if r["variant"] == name and r["test_acc1"] is not None]
        if not runs:
            continue
        colour = f"C{i}"
        ax.scatter([r["training_images"] for r in runs], [r["test_acc1"] for r in runs], s=14, c=colour, alpha=0.6)
        means = [(result["training_images"][f], s[name]["test_acc1"]["mean"])
                 for f, s in result["stats"].items() if s[name]["test_acc1"]["mean"] is not None]
        ax.plot(*zip(*sorted(means)), c=colour, marker="o", label=f"{name} (mean of seeds)")
    if len(result["fractions"]) > 1:
        ax.set_xscale("log")
    ax.set(xlabel="training images", ylabel="test top-1 (%)", title=result["recipe"])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
