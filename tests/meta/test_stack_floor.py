"""The stacks' floor grows with how much a stack amplifies an error made inside it
(spec/stacks.py ``_amplification``): sweep seed 20's jax float64 pre-LN encoder, saved by the
failure, passes with it and fails without it.

The same-precision term of the bound is the reference's own float64 rounding, which differs between
CPUs (numpy's SIMD kernels; the project's CI runner measured 8x this machine's on this example), so
the test takes that term from the failure's saved report, as measured where the sweep failed; the
amplification and the floor are recomputed here."""

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


def _recorded_same_precision_error() -> float:
    """The same-precision error in the saved failure's report (the bound it failed against)."""
    report = info(SAVED)["failure"]
    found = re.search(r"same-precision error ([0-9.e+-]+)", report)
    assert found, f"no same-precision error in the saved report: {report!r}"
    return float(found.group(1))


def test_saved_sweep_failure_needs_the_amplification() -> None:
    pytest.importorskip("jax")
    import reference
    from adapters.jax_adapter import JaxAdapter

    inputs = load(SAVED)
    case = Subject("jax", COMPONENTS["encoder"], FLOAT64, JaxAdapter().encoder).case(inputs)
    error = float(np.abs(case.got - case.expected).max())
    same = _recorded_same_precision_error()
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
    assert error > without, (
        f"error {error:.3g} within {without:.3g} even without the amplification "
        f"({amplification:.3g}): this example no longer shows why it is needed"
    )
