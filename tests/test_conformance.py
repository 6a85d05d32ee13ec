"""Conformance tests, generated from the spec's records (spec/registry.py).

Each test reads: draw inputs -> call the adapter -> check shape and dtype -> check the property ->
compare with the oracle under the tolerance policy. Parametrised over adapter x component x
property x variant x dtype (ids like ``torch-scaled_dot_product_attention.matches_reference[additive]-float16``).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spec.core import ConformanceError, Unsupported
from tests.targets import EXAMPLES, Target, record_ratio


def _run_property(target: Target, data: st.DataObject) -> None:
    EXAMPLES[target.id] += 1
    subject = target.subject()
    try:
        target.check.check(subject, data, target.variant)
    except Unsupported as e:
        pytest.skip(f"unsupported: {e}")
    finally:
        record_ratio(target.id, subject)


@given(data=st.data())
def test_property(target: Target, data: st.DataObject) -> None:
    _run_property(target, data)


# Half the profile's examples: a gradient example costs a backward pass and six extended-precision
# evaluations of the reference per input (a jax one also a trace), and each example checks every input.
@settings(max_examples=max(2, settings.default.max_examples // 2))
@given(data=st.data())
def test_gradient_property(target: Target, data: st.DataObject) -> None:
    """Gradient properties (spec/gradients.py): the adapter's vjp against finite differences of the oracle."""
    _run_property(target, data)


@given(data=st.data())
def test_refuses_bad_input(target: Target, data: st.DataObject) -> None:
    """The adapter raises (any exception) on input the spec refuses, instead of broadcasting or returning garbage."""
    EXAMPLES[target.id] += 1
    subject = target.subject()
    inputs = target.check.draw(data, target.dtype)
    try:
        out = subject.fn(**inputs)
    except Unsupported as e:
        pytest.skip(f"unsupported: {e}")
    except Exception:
        return
    shape = getattr(out, "shape", type(out).__name__)
    finite = bool(np.isfinite(np.asarray(out, dtype=np.float64)).all()) if isinstance(out, np.ndarray) else "?"
    raise ConformanceError(
        f"{subject.label(inputs)}\naccepted bad input {target.check.name!r} ({target.check.doc}) and returned "
        f"{shape} (all finite: {finite}) instead of raising"
    )
