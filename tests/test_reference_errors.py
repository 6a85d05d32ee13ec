"""The reference refuses every bad input the spec lists, with a ValueError naming what was expected
and what came."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spec.registry import COMPONENTS

CASES = [(c, b) for c in COMPONENTS.values() for b in c.bad_inputs]


@pytest.mark.parametrize("component,bad", CASES, ids=[f"{c.name}.{b.name}" for c, b in CASES])
@given(data=st.data())
def test_reference_refuses_with_clear_message(component, bad, data: st.DataObject) -> None:
    inputs = bad.draw(
        data,
        component.dtypes[0]
        if len(component.dtypes) == 1
        else next(d for d in component.dtypes if d.name == "float32"),
    )
    with pytest.raises(ValueError) as info:
        component.reference(**inputs)
    message = str(info.value)
    assert message.startswith(f"{component.name}:"), (
        f"message does not name the component: {message}"
    )
    assert "got" in message and ("must" in message or "expected" in message), (
        f"message lacks expected/got: {message}"
    )
