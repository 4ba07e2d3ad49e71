"""FLOPs of one call (a forward pass, a train step), as ``torch.utils.flop_counter`` counts them (2 per multiply-add).

On CPU, SDPA (timm's ``Attention``) runs ``aten._scaled_dot_product_flash_attention_for_cpu`` (+ ``_backward``),
which torch has no formula for, so attention would count 0: :func:`flop_mapping` adds torch's CUDA SDPA
formulas (2 bmm forward, 5 bmm backward) for those two ops.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _sdpa_cpu_flop(query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size, *args: Any,
                   out_shape: Any = None, **kwargs: Any) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape: torch.Size, query_shape: torch.Size, key_shape: torch.Size,
                            value_shape: torch.Size, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_mapping() -> dict[Any, Callable[..., int]]:
    """Extra FlopCounterMode formulas: the CPU flash-attention ops, unless torch already has them."""
    mapping: dict[Any, Callable[..., int]] = {}
    for name, formula in [("_scaled_dot_product_flash_attention_for_cpu", _sdpa_cpu_flop),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _sdpa_cpu_backward_flop)]:
        op = getattr(aten, name, None)
        if op is not None and op not in flop_counter.flop_registry:
            mapping[op] = formula
    return mapping


def op_name(op: Any) -> str:
    """``aten.mm`` -> ``mm``: the key of an op in per-op counts."""
    return str(op).replace("aten.", "")


def count_flops(fn: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """FLOPs of one call of ``fn`` (with :func:`flop_mapping`) -> (total, per aten op name)."""
    with FlopCounterMode(display=False, custom_mapping=flop_mapping()) as counter:
        fn()
    by_op = {op_name(op): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return int(counter.get_total_flops()), by_op
