"""The spec states every argument's domain (spec/domains.py), and the strategies draw all of it.

Each component's ``args`` name the reference's parameters, in order, with its defaults; every region
of every argument (zero, negative, non-dyadic, extreme, smallest and largest sizes, ties, each mask
shape...) is drawn by the component's properties under the derandomized ci profile.
"""

from __future__ import annotations

import inspect

import pytest

from spec.registry import COMPONENTS
from transformer_conformance.meta import uncovered

STATED = [c for c in COMPONENTS.values() if c.args]


@pytest.mark.parametrize("component", STATED, ids=[c.name for c in STATED])
def test_args_are_the_reference_signature(component) -> None:
    params = inspect.signature(component.reference).parameters
    assert [a.name for a in component.args] == list(params), (
        f"{component.name}: args {[a.name for a in component.args]}"
    )
    for arg in component.args:
        default = params[arg.name].default
        stated = arg.default if arg.has_default else inspect.Parameter.empty
        assert stated == default, (
            f"{component.name}.{arg.name}: the spec says default {stated!r}, the reference "
            f"{default!r}"
        )


@pytest.mark.parametrize("component", STATED, ids=[c.name for c in STATED])
def test_every_region_of_every_argument_is_drawn(component) -> None:
    missing = uncovered(component)
    assert not missing, f"{component.name}: regions no property draws: {missing}"
