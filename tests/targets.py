"""What a conformance test runs on: one adapter x component x property (or bad input) x variant x dtype.

Built from the spec's records at collection time; unsupported components and declared deviations
become pytest marks, so they show in pytest's own output and in the conformance matrix.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from adapters import Adapter
from spec.core import BadInput, Component, Property, Subject
from spec.dtypes import FLOAT32, DType
from spec.registry import COMPONENTS

# Hypothesis examples run per test, for the per-adapter examples/second in the summary.
EXAMPLES: Counter[str] = Counter()
# The largest observed / allowed error ratio of any comparison in a test (how close to the bound it ran).
WORST_RATIO: dict[str, float] = {}


def record_ratio(target_id: str, subject: Subject) -> None:
    ratios = [c.ratio for c in subject.comparisons]  # a failing test's includes the comparison that failed
    if ratios:
        WORST_RATIO[target_id] = float(max(WORST_RATIO.get(target_id, 0.0), max(ratios)))  # execnet sends plain floats only


@dataclass(frozen=True)
class Target:
    adapter: Adapter
    component: Component
    check: Property | BadInput
    variant: str | None
    dtype: DType

    def __repr__(self) -> str:  # Hypothesis prints this in every falsifying example
        return f"<{self.id}>"

    def _repr_pretty_(self, printer: object, cycle: bool) -> None:
        printer.text(repr(self))  # type: ignore[attr-defined]

    @property
    def property_name(self) -> str:
        name = self.check.name if isinstance(self.check, Property) else f"refuses[{self.check.name}]"
        return f"{name}[{self.variant}]" if self.variant else name

    @property
    def id(self) -> str:
        return f"{self.adapter.name}-{self.component.name}.{self.property_name}-{self.dtype.name}"

    def subject(self) -> Subject:
        fn = self.adapter.function(self.component.name)
        assert fn is not None, "unsupported targets are skipped at collection"
        return Subject(self.adapter.name, self.component, self.dtype, fn, self.adapter.namespace)

    def deviation_keys(self) -> list[str]:
        if isinstance(self.check, Property):
            return self.adapter.deviation_keys(self.component.name, self.check.name, self.variant, self.dtype.name)
        return self.adapter.deviation_keys(self.component.name, f"refuses[{self.check.name}]", None, self.dtype.name)

    def param(self) -> object:
        marks = []
        if self.adapter.function(self.component.name) is None:
            marks.append(
                pytest.mark.skip(reason=f"unsupported: adapter {self.adapter.name} does not offer {self.component.name}")
            )
        if isinstance(self.check, Property):
            reason = self.adapter.deviation(self.component.name, self.check.name, self.variant, self.dtype.name)
        else:
            reason = self.adapter.deviation(self.component.name, f"refuses[{self.check.name}]", None, self.dtype.name)
        if reason:
            marks.append(pytest.mark.xfail(reason=f"declared deviation: {reason}", strict=False))
        return pytest.param(self, id=self.id, marks=marks)


def property_targets(adapters: list[Adapter], components: list[str] | None = None, kind: str = "forward") -> Iterator[Target]:
    for adapter in adapters:
        for component in COMPONENTS.values():
            if components and component.name not in components:
                continue
            for prop in (p for p in component.properties if p.kind == kind):
                for dtype in (d for d in prop.dtypes if d in component.dtypes):
                    for variant in prop.variants:
                        yield Target(adapter, component, prop, variant, dtype)


def bad_input_targets(adapters: list[Adapter], components: list[str] | None = None) -> Iterator[Target]:
    for adapter in adapters:
        for component in COMPONENTS.values():
            if components and component.name not in components:
                continue
            for bad in component.bad_inputs:
                # refusing a shape error does not depend on precision: one dtype is enough
                dtype = FLOAT32 if FLOAT32 in component.dtypes else component.dtypes[0]
                yield Target(adapter, component, bad, None, dtype)
