"""What a conformance test runs on: one adapter x component x property (or bad input) x variant x
dtype.

Built from the spec's records at collection time. A component the adapter does not offer becomes a
skip mark; a declared deviation is carried as ``declared`` and judged by the runner over the run's
examples (runner.py), not by an xfail mark that flips with the first example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st

from adapters import Adapter, Deviation
from spec.core import BadInput, Component, ConformanceError, Property, Subject, Unsupported
from spec.dtypes import FLOAT32, DType
from spec.registry import COMPONENTS


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
        name = (
            self.check.name if isinstance(self.check, Property) else f"refuses[{self.check.name}]"
        )
        return f"{name}[{self.variant}]" if self.variant else name

    @property
    def id(self) -> str:
        """The test id: the adapter's key (a built-in's name or a third party's module:object, so
        that a pasted id loads its adapter), component.property[variant], dtype."""
        return f"{self.adapter.key}-{self.component.name}.{self.property_name}-{self.dtype.name}"

    @property
    def cell(self) -> tuple[str, str]:
        """(component, adapter name): the matrix cell this target counts in."""
        return self.component.name, self.adapter.name

    def subject(self) -> Subject:
        fn = self.adapter.function(self.component.name)
        assert fn is not None, "unsupported targets are skipped at collection"
        return Subject(self.adapter.name, self.component, self.dtype, fn, self.adapter.namespace)

    def body(self) -> Callable[[Subject, st.DataObject], None]:
        """What one example runs: the property's check, or the refusal of the bad input."""
        check = self.check
        if isinstance(check, Property):
            return lambda subject, data: check.check(subject, data, self.variant)
        return lambda subject, data: refuses(check, self.dtype, subject, data)

    @property
    def declared(self) -> Deviation | None:
        """The adapter's declared reason for differing here, if it declared one."""
        prop = (
            self.check.name if isinstance(self.check, Property) else f"refuses[{self.check.name}]"
        )
        variant = self.variant if isinstance(self.check, Property) else None
        return self.adapter.deviation(self.component.name, prop, variant, self.dtype.name)

    def deviation_keys(self) -> list[str]:
        if isinstance(self.check, Property):
            return self.adapter.deviation_keys(
                self.component.name, self.check.name, self.variant, self.dtype.name
            )
        return self.adapter.deviation_keys(
            self.component.name, f"refuses[{self.check.name}]", None, self.dtype.name
        )

    def param(self) -> object:
        marks = []
        if self.adapter.function(self.component.name) is None:
            marks.append(
                pytest.mark.skip(
                    reason=f"unsupported: adapter {self.adapter.name} does not offer "
                    f"{self.component.name}"
                )
            )
        elif (
            isinstance(self.check, Property)
            and self.check.kind == "gradient"
            and not callable(getattr(self.adapter.namespace, "vjp", None))
        ):
            marks.append(
                pytest.mark.skip(
                    reason=f"unsupported: adapter {self.adapter.name} offers no vjp (gradients)"
                )
            )
        return pytest.param(self, id=self.id, marks=marks)


def refuses(bad: BadInput, dtype: Any, subject: Subject, data: st.DataObject) -> None:
    """The adapter raises (any exception) on input the spec refuses, instead of broadcasting or
    returning garbage."""
    inputs = bad.draw(data, dtype)
    subject.calls.append(inputs)
    try:
        out = subject.fn(**inputs)
    except Unsupported:
        raise  # cannot express the input at all: counted as unsupported, not as refused
    except Exception:
        return
    shape = getattr(out, "shape", type(out).__name__)
    finite = (
        bool(np.isfinite(np.asarray(out, dtype=np.float64)).all())
        if isinstance(out, np.ndarray)
        else "?"
    )
    raise ConformanceError(
        f"{subject.label(inputs)}\naccepted bad input {bad.name!r} ({bad.doc}) and returned "
        f"{shape} (all finite: {finite}) instead of raising",
        inputs,
    )


def property_targets(
    adapters: list[Adapter], components: list[str] | None = None, kind: str = "forward"
) -> Iterator[Target]:
    for adapter in adapters:
        for component in COMPONENTS.values():
            if components and component.name not in components:
                continue
            for prop in (p for p in component.properties if p.kind == kind):
                for dtype in (d for d in prop.dtypes if d in component.dtypes):
                    for variant in prop.variants:
                        yield Target(adapter, component, prop, variant, dtype)


def bad_input_targets(
    adapters: list[Adapter], components: list[str] | None = None
) -> Iterator[Target]:
    for adapter in adapters:
        for component in COMPONENTS.values():
            if components and component.name not in components:
                continue
            for bad in component.bad_inputs:
                # refusing a shape error does not depend on precision: one dtype is enough
                dtype = FLOAT32 if FLOAT32 in component.dtypes else component.dtypes[0]
                yield Target(adapter, component, bad, None, dtype)
