"""The stacks' floor grows with how much a stack amplifies an error made inside it
(spec/stacks.py ``_amplification``): sweep seed 20's jax float64 pre-LN encoder, saved by the
failure, passes with it and fails without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spec.core import Subject
from spec.dtypes import FLOAT64
from spec.registry import COMPONENTS
from spec.stacks import _amplification
from spec.tolerance import MULTIPLIER, cast_floats
from transformer_conformance.failures import load

SAVED = Path(__file__).parent / "data" / "sweep20_jax_pre_ln_encoder_float64.npz"


def test_saved_sweep_failure_needs_the_amplification() -> None:
    pytest.importorskip("jax")
    import reference
    from adapters.jax_adapter import JaxAdapter

    inputs = load(SAVED)
    case = Subject("jax", COMPONENTS["encoder"], FLOAT64, JaxAdapter().encoder).case(inputs)
    error = float(np.abs(case.got - case.expected).max())
    bound = case.bound
    wide = cast_floats(inputs, np.dtype(np.float64))
    amplification = _amplification(reference.encoder, wide, reference.encoder(**wide))
    without = MULTIPLIER * bound.same_precision_error + bound.floor / amplification
    assert amplification > 1.0
    assert error <= bound.allowed, f"error {error:.3g} > allowed {bound.allowed:.3g}"
    assert error > without, (
        f"error {error:.3g} within {without:.3g} even without the amplification "
        f"({amplification:.3g}): this example no longer shows why it is needed"
    )
