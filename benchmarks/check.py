"""The spot check: a benchmark's output must agree with the oracle before its speed is reported.

A fast wrong kernel is no result. Attention is checked on its whole output for batch item 0 and
head 0 (every query against every key, the causal mask's every row) against the streaming float64
oracle, under the kernel-scale policy (spec/kernel_scale.py: 4x the reference's own rounding at that
length, plus the output's rounding); float64 and the row-wise components on a slice the plain oracle
affords (Case.spot_check), under the conformance suite's policy; so are the attention variants
(grouped heads, windows, soft-caps: the first and last queries of batch 0, query head 0, which reads
key/value head 0, against variant_attention).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.cases import ATTENTION, Case
from reference.streaming import streaming_attention
from spec.dtypes import BY_NAME
from spec.kernel_scale import kernel_bound
from spec.registry import COMPONENTS
from spec.tolerance import Comparison, bound_for, compare, oracle


def spot_check(case: Case, inputs: dict[str, Any], got: np.ndarray) -> Comparison | None:
    """The comparison of ``got``'s slice with the oracle's, or None for a probe that is no spec
    component."""
    if case.component not in COMPONENTS:
        return None
    component, dtype = COMPONENTS[case.component], BY_NAME[case.dtype]
    if case.variants:  # grouped heads, a window, a soft-cap: the spec's variant_attention
        component = COMPONENTS["variant_attention"]
    elif case.component == ATTENTION and dtype.name != "float64":
        return _whole_head(case, inputs, got, dtype)
    sub, got_sub = case.spot_check(inputs, got)
    expected = np.asarray(oracle(component.reference, sub, dtype))
    bound = bound_for(component.reference, sub, dtype, expected, component.error_scale(sub))
    return compare(got_sub, expected, bound, f"{case.id} spot check")


def _whole_head(case: Case, inputs: dict[str, Any], got: np.ndarray, dtype: Any) -> Comparison:
    """Batch item 0, head 0, whole: the streaming float64 oracle and the kernel-scale bound."""
    causal = "top_left" if case.causal else None
    sub = {n: inputs[n][:1, :1] for n in ("q", "k", "v")}  # (1, 1, L, K) each
    wide = {n: a.astype(np.float64) for n, a in sub.items()}
    expected, _, _ = streaming_attention(**wide, causal=causal)  # (1, 1, T, K)
    bound = kernel_bound({**sub, "causal": causal}, dtype, expected)
    return compare(got[:1, :1], expected, bound, f"{case.id} spot check (batch 0, head 0, whole)")
