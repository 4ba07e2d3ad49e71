"""Evaluation metrics (clip and video level) and result writers."""
from ..metrics import (
    StreamingMetrics,
    aggregate,
    binary_metrics,
    confident_strategy,
    equal_error_rate,
    split_key,
)
from .report import (
    ResultsTable,
    crossdata_markdown,
    results_markdown,
    results_table,
    roc_png,
    write_crossdata_results,
    write_predictions_csv,
    write_results,
)

__all__ = [
    "ResultsTable",
    "StreamingMetrics",
    "aggregate",
    "binary_metrics",
    "confident_strategy",
    "crossdata_markdown",
    "equal_error_rate",
    "results_markdown",
    "results_table",
    "roc_png",
    "split_key",
    "write_crossdata_results",
    "write_predictions_csv",
    "write_results",
]
