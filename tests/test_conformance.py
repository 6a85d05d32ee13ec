"""Conformance tests, generated from the spec's records (spec/registry.py).

Each test reads: draw inputs -> call the adapter -> check shape and dtype -> check the property ->
compare with the oracle under the tolerance policy. Parametrised over adapter x component x
property x variant x dtype (ids like ``torch-scaled_dot_product_attention.matches_reference[additive]-float16``);
the runner (transformer_conformance/runner.py) runs the examples and gives the verdict.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from spec.core import ConformanceError, Subject, Unsupported
from transformer_conformance.plugin import Conformance
from transformer_conformance.targets import Target


def test_property(target: Target, tcs: Conformance, request: pytest.FixtureRequest) -> None:
    """The adapter's output satisfies the property, and agrees with the oracle, on every example."""
    tcs.run(request, target, lambda subject, data: target.check.check(subject, data, target.variant))


def test_gradient_property(target: Target, tcs: Conformance, request: pytest.FixtureRequest) -> None:
    """Gradient properties (spec/gradients.py): the adapter's vjp against finite differences of the oracle."""
    tcs.run(request, target, lambda subject, data: target.check.check(subject, data, target.variant), gradient=True)


def refuses(target: Target, subject: Subject, data: st.DataObject) -> None:
    """The adapter raises (any exception) on input the spec refuses, instead of broadcasting or returning garbage."""
    inputs = target.check.draw(data, target.dtype)
    try:
        out = subject.fn(**inputs)
    except Unsupported:
        raise  # cannot express the input at all: counted as unsupported, not as refused
    except Exception:
        return
    shape = getattr(out, "shape", type(out).__name__)
    finite = bool(np.isfinite(np.asarray(out, dtype=np.float64)).all()) if isinstance(out, np.ndarray) else "?"
    raise ConformanceError(
        f"{subject.label(inputs)}\naccepted bad input {target.check.name!r} ({target.check.doc}) and returned "
        f"{shape} (all finite: {finite}) instead of raising",
        inputs,
    )


def test_refuses_bad_input(target: Target, tcs: Conformance, request: pytest.FixtureRequest) -> None:
    """The adapter refuses input the spec refuses."""
    tcs.run(request, target, lambda subject, data: refuses(target, subject, data))
