"""The conformance tests' bodies, shared by the one thin file per family (test_<family>.py), so that
a test id names the file of its family.

Each test reads: draw inputs -> call the adapter -> check shape and dtype -> check the property ->
compare with the oracle under the tolerance policy. Parametrised over adapter x component x property
x variant x dtype (ids like
``torch-scaled_dot_product_attention.matches_reference[additive]-float16``); the runner
(transformer_conformance/runner.py) runs the examples and gives the verdict.
"""

from __future__ import annotations

import pytest

from transformer_conformance.plugin import Conformance
from transformer_conformance.targets import Target


def test_property(target: Target, tcs: Conformance, request: pytest.FixtureRequest) -> None:
    """The adapter's output satisfies the property, and agrees with the oracle, on every example."""
    tcs.run(request, target)


def test_gradient_property(
    target: Target, tcs: Conformance, request: pytest.FixtureRequest
) -> None:
    """Gradient properties (spec/gradients.py): the adapter's vjp against finite differences of the
    oracle."""
    tcs.run(request, target, gradient=True)


def test_kernel_property(target: Target, tcs: Conformance, request: pytest.FixtureRequest) -> None:
    """Kernel scale (spec/kernel_scale.py, the kernel profile only): production lengths against the
    streaming float64 oracle."""
    tcs.run(request, target)


def test_refuses_bad_input(
    target: Target, tcs: Conformance, request: pytest.FixtureRequest
) -> None:
    """The adapter refuses input the spec refuses: it raises instead of returning a result."""
    tcs.run(request, target)
