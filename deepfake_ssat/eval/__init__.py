"""Evaluation metrics (clip and video level), the two results tables (Table 8, cross-dataset) and their writers."""
from ..metrics import (
    StreamingMetrics,
    aggregate,
    binary_metrics,
    confident_strategy,
    equal_error_rate,
    split_key,
)
from .report import (
    CROSSDATA_FORMAT,
    TABLE8_FORMAT,
    ResultsTable,
    crossdata_markdown,
    results_markdown,
    read_records,
    results_table,
    roc_png,
    update_table,
    write_crossdata_results,
    write_predictions_csv,
    write_results,
)

__all__ = [
    "CROSSDATA_FORMAT",
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
    "read_records",
    "split_key",
    "TABLE8_FORMAT",
    "update_table",
    "write_crossdata_results",
    "write_predictions_csv",
    "write_results",
]
