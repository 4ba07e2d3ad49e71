"""Evaluation outputs: ROC figure, the paper's Table 8 layout (Markdown) plus CSV/JSON, per-video CSV, and the
cross-dataset table of ``dfssat-evaluate`` (:func:`write_crossdata_results`). Both tables grow across runs through
one reader and one writer: :func:`read_records` / :func:`update_table` (a record of the same key is replaced).

A Table 8 results record is ``{"model": str, "protocol": "cross" | "zero-shot", "method": str, "metrics": m}``
where ``m`` is either one ``binary_metrics`` dict or ``{"clip": ..., "video": ...}`` of them (as in
``StreamingMetrics.compute()["per_method"][method]``).

A NaN / inf score or metric is refused with a one-line ``ValueError`` (never written as ``nan`` or turned
into an accuracy); JSON is written strictly (no ``NaN`` tokens).
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure  # drawn by Agg directly: no pyplot, no display, nothing left open
from sklearn.metrics import roc_auc_score, roc_curve

from ..faces.inputs import FFPP_PAPER_METHODS
from ..io import atomic_write, atomic_write_json, atomic_write_text, first_line

PROTOCOLS = {"cross": "Cross-manipulation", "zero-shot": "Zero-shot"}
TABLE8_FORMAT = "deepfake_ssat.table8/1"  # results.json of dfssat-eval-ff (files from before it carry no format)
METRIC_FIELDS = ("acc", "acc_real", "acc_fake", "auc", "ap", "eer", "n", "n_real", "n_fake")
VIDEO_FIELDS = ("key", "dataset", "method", "compression", "video_id", "label", "prob", "num_clips")
MISSING = "–"


def roc_png(curves: Mapping[str, tuple[Any, Any]], path: str | Path, title: str = "ROC") -> None:
    """One ROC curve per ``name -> (labels, probs)`` (fake positive), AUC in the legend; written atomically."""
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for name, (labels, probs) in curves.items():
        labels, probs = _numpy(labels), _numpy(probs)
        if len(set(labels.tolist())) < 2:
            raise ValueError(f"roc_png: curve {name!r} has a single class; a ROC needs real and fake samples")
        if not np.isfinite(probs.astype(np.float64)).all():
            raise ValueError(f"roc_png: curve {name!r} has NaN / inf scores")
        fpr, tpr, _ = roc_curve(labels, probs)
        ax.plot(fpr, tpr, label=f"{name} (AUC = {roc_auc_score(labels, probs):.4f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="False positive rate", ylabel="True positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1)


@dataclass(frozen=True)
class ResultsTable:
    """Validated results records; ``columns`` are the methods shown, ``level`` picks nested metrics' level."""

    records: tuple[dict[str, Any], ...]
    columns: tuple[str, ...]
    level: str

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r["model"] for r in self.records))

    def cell(self, model: str, protocol: str, method: str) -> dict[str, Any] | None:
        """The flat metrics dict of one cell, or ``None`` when missing."""
        for r in self.records:
            if (r["model"], r["protocol"], r["method"]) == (model, protocol, method):
                m = r["metrics"]
                nested = any(isinstance(v, Mapping) for v in m.values())
                return m.get(self.level) if nested else m
        return None


def results_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[str] = FFPP_PAPER_METHODS, level: str = "video"
) -> ResultsTable:
    """Validate records (see module doc); a duplicate (model, protocol, method) raises ``ValueError``.

    Records for methods outside ``columns`` are kept for the CSV/JSON but not shown in the Markdown.
    """
    records, seen = [], set()
    for row in rows:
        missing = {"model", "protocol", "method", "metrics"} - set(row)
        if missing:
            raise ValueError(f"results record {dict(row)!r} lacks {sorted(missing)}")
        if row["protocol"] not in PROTOCOLS:
            raise ValueError(f"protocol {row['protocol']!r} is not one of {list(PROTOCOLS)}")
        ident = (str(row["model"]), row["protocol"], str(row["method"]))
        if ident in seen:
            raise ValueError(f"duplicate results record for model/protocol/method {ident}")
        bad = _non_finite(row["metrics"])
        if bad:
            raise ValueError(f"results record {ident}: metric {bad} is not a finite number; "
                             f"a NaN / inf score cannot give an accuracy")
        seen.add(ident)
        records.append({"model": ident[0], "protocol": ident[1], "method": ident[2], "metrics": dict(row["metrics"])})
    return ResultsTable(tuple(records), tuple(columns), level)


def _non_finite(metrics: Mapping[str, Any], prefix: str = "") -> str | None:
    """The name of the first NaN / inf value in (nested) ``metrics``, or None."""
    for k, v in metrics.items():
        if isinstance(v, Mapping):
            bad = _non_finite(v, f"{prefix}{k}.")
            if bad:
                return bad
        elif isinstance(v, (float, np.floating)) and not math.isfinite(v):
            return f"{prefix}{k} = {v}"
    return None


def _fmt(value: float | None, scale: float) -> str:
    return MISSING if value is None else f"{value * scale:.2f}"


def results_markdown(table: ResultsTable) -> str:
    """Table 8 layout: one table for accuracy and one for AUC (both %, 2 decimals); rows = models,
    columns = the methods under each protocol (``Deepfakes (cross)`` ... ``Deepfakes (zero-shot)`` ...)."""
    header = ["Model"] + [f"{m} ({p})" for p in PROTOCOLS for m in table.columns]
    sections = " / ".join(f"`({p})` = {name}" for p, name in PROTOCOLS.items())
    lines = ["# Results", "", f"Columns: {sections}; level: {table.level}; `{MISSING}` = not evaluated.", ""]
    for title, metric, scale in (("Accuracy (%)", "acc", 1.0), ("AUC (%)", "auc", 100.0)):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model in table.models:
            cells = [
                _fmt((table.cell(model, p, m) or {}).get(metric), scale) for p in PROTOCOLS for m in table.columns
            ]
            lines.append("| " + " | ".join([model] + cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _flat_rows(table: ResultsTable) -> list[dict[str, Any]]:
    """One CSV row per record and metrics level (``level`` empty for flat metrics)."""
    out = []
    for r in table.records:
        m = r["metrics"]
        levels = {k: v for k, v in m.items() if isinstance(v, Mapping)} or {"": m}
        for level, values in levels.items():
            out.append({"model": r["model"], "protocol": r["protocol"], "method": r["method"], "level": level}
                       | {f: values.get(f) for f in METRIC_FIELDS})
    return out


def _csv_text(rows: Iterable[Mapping[str, Any]], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({f: "" if row.get(f) is None else row.get(f) for f in fields})
    return buf.getvalue()


def write_results(out_dir: str | Path, table: ResultsTable) -> dict[str, Path]:
    """Write ``results.md``, ``results.csv`` (all metrics) and ``results.json`` (the records) atomically."""
    out = Path(out_dir)
    paths = {ext: out / f"results.{ext}" for ext in ("md", "csv", "json")}
    atomic_write_text(paths["md"], results_markdown(table))
    fields = ("model", "protocol", "method", "level") + METRIC_FIELDS
    atomic_write_text(paths["csv"], _csv_text(_flat_rows(table), fields))
    meta = {"format": TABLE8_FORMAT, "columns": list(table.columns), "level": table.level}
    atomic_write_json(paths["json"], meta | {"records": list(table.records)})
    return paths


def write_predictions_csv(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Per-video predictions (``StreamingMetrics.videos()`` rows) as CSV, written atomically; a row whose
    ``prob`` is NaN / inf raises ``ValueError`` naming the video (nothing is written)."""
    rows = list(rows)
    for row in rows:
        prob = row.get("prob")
        if prob is not None and not math.isfinite(float(prob)):
            raise ValueError(f"video {row.get('key')}: score is {prob}, not a probability; "
                             f"the model's output is not finite (corrupted weights?)")
    atomic_write_text(path, _csv_text(rows, VIDEO_FIELDS))


# ------------------------------------------------------------------ cross-dataset table (dfssat-evaluate)

CROSSDATA_FORMAT = "deepfake_ssat.crossdata/1"
CROSSDATA_DATASETS = ("ffpp", "celebdf", "dfdc-test", "list")  # the table's column order
CROSSDATA_METRICS = (  # markdown tables: (title, metric, scale; None = 4 decimals unscaled)
    ("AUC (%)", "auc", 100.0), ("ACC (%)", "acc", 1.0), ("AP (%)", "ap", 100.0),
    ("Log-loss (nats, lower is better)", "log_loss", None), ("EER (%, lower is better)", "eer", 100.0))
CROSSDATA_FIELDS = ("model", "test_set", "dataset", "level", "acc", "balanced_acc", "auc", "ap", "log_loss", "eer",
                    "acc_real", "acc_fake", "n", "n_real", "n_fake", "strategy", "compression", "protocol",
                    "checkpoint", "model_sha256", "data_root", "predictions", "roc", "date")


def _fmt_metric(value: float | None, scale: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.4f}" if scale is None else f"{value * scale:.2f}"


def crossdata_markdown(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """One table per metric (AUC, ACC, AP, log-loss, EER): rows = models, columns = test sets; a missing cell
    (not evaluated, or undefined: AUC / AP / EER of a test set with one class) is ``–``."""
    cells = {(r["model"], r["test_set"]): r["metrics"] for r in records}
    models = list(dict.fromkeys(r["model"] for r in records))
    header = ["Model", *columns]
    lines = ["# Cross-dataset results (video level)", "",
             f"Rows: models; columns: test sets (fake = positive class). `{MISSING}` = not evaluated, or undefined "
             f"(a test set with one class has no AUC / AP / EER).", ""]
    for title, metric, scale in CROSSDATA_METRICS:
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for model in models:
            row = [_fmt_metric((cells.get((model, c)) or {}).get(metric), scale) for c in columns]
            lines.append("| " + " | ".join([model, *row]) + " |")
        lines.append("")
    return "\n".join(lines)


def write_crossdata_results(out_dir: str | Path, records: Sequence[Mapping[str, Any]],
                            columns: Sequence[str]) -> dict[str, Path]:
    """Write a cross-dataset table as ``results.md`` (:func:`crossdata_markdown`), ``results.csv`` (one row per
    record, :data:`CROSSDATA_FIELDS`, empty = missing) and ``results.json`` (format, columns, the records; missing
    = null), atomically. A record is ``{"model", "test_set", "metrics": binary_metrics dict, ...}`` (what else it
    holds goes to the CSV / JSON); a NaN / inf metric or a duplicate (model, test set) raises ``ValueError``."""
    seen = set()
    for r in records:
        ident = (r["model"], r["test_set"])
        if ident in seen:
            raise ValueError(f"duplicate results record for model/test set {ident}")
        seen.add(ident)
        bad = _non_finite(r["metrics"])
        if bad:
            raise ValueError(f"results record {ident}: metric {bad} is not a finite number; "
                             f"a NaN / inf score cannot give an accuracy")
    out = Path(out_dir)
    paths = {ext: out / f"results.{ext}" for ext in ("md", "csv", "json")}
    atomic_write_text(paths["md"], crossdata_markdown(records, columns))
    rows = [{k: v for k, v in r.items() if k != "metrics"} | dict(r["metrics"]) for r in records]
    atomic_write_text(paths["csv"], _csv_text(rows, CROSSDATA_FIELDS))
    atomic_write_json(paths["json"], {"format": CROSSDATA_FORMAT, "level": "video", "columns": list(columns),
                                      "records": [dict(r) for r in records]})
    return paths


# ------------------------------------------------------------------ one reader and one writer for both tables

@dataclass(frozen=True)
class _TableKind:
    """What tells the two ``results.json`` tables apart: the records' key and the command that writes them."""
    title: str
    key: tuple[str, ...]
    command: str


_KINDS = {TABLE8_FORMAT: _TableKind("Table 8", ("model", "protocol", "method"), "dfssat-eval-ff"),
          CROSSDATA_FORMAT: _TableKind("cross-dataset table", ("model", "test_set"), "dfssat-evaluate")}


def read_records(out: str | Path, fmt: str) -> list[dict[str, Any]]:
    """The records of ``out/results.json`` (none when there is none), which must be a table of format ``fmt``
    (:data:`TABLE8_FORMAT` or :data:`CROSSDATA_FORMAT`); a one-line ``ValueError`` naming the file when it is not
    readable JSON or is the other table (a Table 8 written before formats were recorded counts as Table 8)."""
    import json

    kind, path = _KINDS[fmt], Path(out) / "results.json"
    if not path.is_file():
        return []
    try:
        saved = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"{path}: not readable JSON ({first_line(e, 120)}); move it away to start a new "
                         f"table") from None
    found = saved.get("format", TABLE8_FORMAT) if isinstance(saved, dict) else None
    if found != fmt or not isinstance(saved.get("records"), list):
        raise ValueError(f"{path}: not a {kind.title} of {kind.command} ({fmt}); give another --out")
    return saved["records"]


def update_table(out: str | Path, records: Sequence[Mapping[str, Any]], fmt: str) -> dict[str, Path]:
    """``results.{md,csv,json}`` in ``out``: ``records`` merged into the table of format ``fmt`` already there (a
    record with the same key — (model, protocol, method) in Table 8, (model, test set) across datasets — is
    replaced), written atomically. Cross-dataset columns follow :data:`CROSSDATA_DATASETS`."""
    key = _KINDS[fmt].key
    new = {tuple(r[k] for k in key) for r in records}
    merged = [r for r in read_records(out, fmt) if tuple(r[k] for k in key) not in new] + [dict(r) for r in records]
    if fmt == TABLE8_FORMAT:
        return write_results(out, results_table(merged))
    rank = {d: i for i, d in enumerate(CROSSDATA_DATASETS)}
    order = sorted(range(len(merged)), key=lambda i: (rank.get(merged[i]["dataset"], len(rank)), i))
    return write_crossdata_results(out, merged, list(dict.fromkeys(merged[i]["test_set"] for i in order)))
