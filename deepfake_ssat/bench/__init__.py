"""Benchmarks, one module per sub-command of ``dfssat-benchmark`` (model, faces, loader, eval): each
``run_*_benchmark`` returns one JSON-able dict and its ``format_*`` a short text summary of it.

The top layer: these modules may import anything in the package; only ``bench`` and ``commands`` import them.
"""
