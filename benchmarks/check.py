"""The spot check: a benchmark's output must agree with the oracle before its speed is reported.

A fast wrong kernel is no result. The oracle cannot afford a 16k x 16k attention, so the check takes
a slice it can (Case.spot_check) and holds it to the same tolerance policy as the conformance suite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.cases import Case
from spec.dtypes import BY_NAME
from spec.registry import COMPONENTS
from spec.tolerance import Comparison, bound_for, compare, oracle


def spot_check(case: Case, inputs: dict[str, Any], got: np.ndarray) -> Comparison | None:
    """The comparison of ``got``'s slice with the oracle's, or None for a probe that is no spec
    component."""
    if case.component not in COMPONENTS:
        return None
    component, dtype = COMPONENTS[case.component], BY_NAME[case.dtype]
    sub, got_sub = case.spot_check(inputs, got)
    expected = np.asarray(oracle(component.reference, sub, dtype))
    bound = bound_for(component.reference, sub, dtype, expected, component.error_scale(sub))
    return compare(got_sub, expected, bound, f"{case.id} spot check")
