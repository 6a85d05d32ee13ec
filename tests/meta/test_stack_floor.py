"""The stacks' floor grows with how much a stack amplifies an error made inside it
(spec/stacks.py ``_amplification``): sweep seed 20's jax float64 pre-LN encoder, saved by the
failure, passes with it, and the error it failed with is over the bound without it.

Both terms that depend on where the example runs are taken from the failure's saved report, as
measured where the sweep failed: the same-precision term (the reference's own float64 rounding,
which differs between CPUs: numpy's SIMD kernels; the project's CI runner measured 8x this
machine's on this example) and the error the sweep saw (jax's float64 rounding differs a little
between runs and processes: 1.83e-14 in the sweep, 1.78e-14 in one process here, against 1.79e-14
without the amplification). The amplification and the floor are recomputed from the spec here, so
removing the amplification from spec/stacks.py turns this test red."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from spec.core import Subject
from spec.dtypes import FLOAT64
from spec.registry import COMPONENTS
from spec.stacks import _amplification
from spec.tolerance import MULTIPLIER, cast_floats
from transformer_conformance.failures import info, load

SAVED = Path(__file__).parent / "data" / "sweep20_jax_pre_ln_encoder_float64.npz"


def _recorded(pattern: str) -> float:
    """A number in the saved failure's report (the error it had and the bound it failed)."""
    report = info(SAVED)["failure"]
    found = re.search(pattern + r" ([0-9.e+-]+)", report)
    assert found, f"no {pattern!r} in the saved report: {report!r}"
    return float(found.group(1))


def test_saved_sweep_failure_needs_the_amplification() -> None:
    pytest.importorskip("jax")
    import reference
    from adapters.jax_adapter import JaxAdapter

    inputs = load(SAVED)
    case = Subject("jax", COMPONENTS["encoder"], FLOAT64, JaxAdapter().encoder).case(inputs)
    error = float(np.abs(case.got - case.expected).max())
    same = _recorded("same-precision error")
    failed_with = _recorded(r"max \|got - expected\| =")
    wide = cast_floats(inputs, np.dtype(np.float64))
    amplification = _amplification(reference.encoder, wide, reference.encoder(**wide))
    floor = case.bound.floor  # 8 u x scale, the scale multiplied by the amplification
    with_it = MULTIPLIER * same + floor
    without = MULTIPLIER * same + floor / amplification
    assert amplification > 1.0
    assert error <= with_it, (
        f"error {error:.3g} > {with_it:.3g} = {MULTIPLIER:g} x recorded same-precision error "
        f"{same:.3g} + floor {floor:.3g} (amplification {amplification:.3g})"
    )
    assert failed_with <= with_it, (
        f"the sweep's error {failed_with:.3g} > {with_it:.3g}, the bound with the amplification "
        f"({amplification:.3g})"
    )
    assert failed_with > without, (
        f"the sweep's error {failed_with:.3g} within {without:.3g} even without the amplification "
        f"({amplification:.3g}): this example no longer shows why it is needed"
    )
