"""Mechanical mutants of the reference (spec/domains.py): each argument replaced by its default,
perturbed slightly, swapped with an argument of its kind. The component's own properties (ci
profile) catch every one, or its Arg says why no property can see it.

The whole table is ``make mutants`` (docs/MUTANTS.md, minutes); CI hunts a deterministic sample:
every mutant of the arguments that carry regions in the attention family, and every fifth mutant
elsewhere.
"""

from __future__ import annotations

import os

import pytest

from spec.domains import mutants
from spec.registry import COMPONENTS
from transformer_conformance.meta import drawn_inputs, hunt

ATTENTION = {
    "softmax",
    "attention_weights",
    "scaled_dot_product_attention",
    "multi_head_attention",
    "grouped_query_attention",
}
EVERY = os.environ.get("TCS_ALL_MUTANTS") == "1"
CASES = [
    (c.name, m)
    for c in COMPONENTS.values()
    for i, m in enumerate(mutants(c.name, c.args))
    if m.why_invisible is None and (EVERY or c.name in ATTENTION or i % 5 == 0)
]
_DRAWN: dict[str, list] = {}


@pytest.mark.parametrize("component,mutant", CASES, ids=[f"{c}: {m.name}" for c, m in CASES])
def test_mutant_is_caught(component: str, mutant) -> None:
    if component not in _DRAWN:
        _DRAWN[component] = drawn_inputs(COMPONENTS[component])
    verdict = hunt(mutant, _DRAWN[component])
    if verdict is None:
        pytest.skip("a swap of two arguments never drawn with one shape: it does not apply")
    assert verdict.caught_by is not None, f"{mutant}: {verdict.how}"
