"""The declarative records the suite is generated from, and the harness that runs one adapter call.

A ``Component`` is one spec entry (as JAX's OpRecord or PyTorch's OpInfo): name, signature, shape
rules, dtypes, properties, bad inputs and the error scale for the tolerance policy. Tests are
generated from these records; nothing is written per component.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NoReturn

import numpy as np
from hypothesis import strategies as st

import reference
from reference.semantics import CANONICAL, convention, semantics
from spec.domains import Arg
from spec.dtypes import ALL_DTYPES, DType
from spec.tolerance import Bound, Comparison, bound_for, compare, oracle


class Unsupported(Exception):
    """Raised by an adapter for a component or input variant its library does not offer.

    The suite reports it as "unsupported", never as a failure. ``everywhere=True`` says the reason
    does not depend on the drawn values: every call that asks for this (a gradient, the dtype, an
    optional argument given at all) is refused. A test whose first examples are all refused so
    stops drawing after ``runner.EVERYWHERE_DRAWS`` of them, instead of the hundreds Hypothesis
    would draw to find one the adapter can express.
    """

    def __init__(self, reason: str, *, everywhere: bool = False):
        super().__init__(reason)
        self.everywhere = everywhere


class ConformanceError(AssertionError):
    """A conformance failure; the message names component, adapter, dtype, shapes and worst error.
    ``inputs`` are the example's inputs (saved as .npz with the failure)."""

    def __init__(self, message: str, inputs: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.inputs = dict(inputs) if inputs is not None else None


Check = Callable[["Subject", st.DataObject, Any], None]


@dataclass(frozen=True)
class Property:
    """One property an output must satisfy; ``check`` draws inputs, calls the adapter and
    asserts."""

    name: str
    doc: str
    check: Check
    variants: tuple[str | None, ...] = (None,)
    dtypes: tuple[DType, ...] = ALL_DTYPES
    kind: str = "forward"  # or "gradient" (spec/gradients.py): run by test_gradient_property


@dataclass(frozen=True)
class BadInput:
    """An input the spec refuses: the reference raises ValueError, an adapter must raise
    anything."""

    name: str
    doc: str
    draw: Callable[[st.DataObject, DType], dict[str, Any]]


Draw = Callable[[st.DataObject, DType, Any], dict[str, Any]]


@dataclass(frozen=True)
class Gradient:
    """What a component's gradient property differentiates (spec/gradients.py): the input paths per
    variant ("q", "params.w_q"), the variants, the draw when it is not the component's own, and, for
    a piecewise-smooth component, the largest step that stays on one side of every kink."""

    wrt: Callable[[Any], tuple[str, ...]]
    variants: tuple[Any, ...] = (None,)
    draw: Draw | None = None
    max_step: Callable[..., float | None] | None = None


def paths(*names: str) -> Callable[[Any], tuple[str, ...]]:
    """The same paths whatever the variant."""
    return lambda variant: names


@dataclass(frozen=True)
class Component:
    """One spec entry: what the component is (its reference function of the same name is the oracle
    and the source of the signature), its arguments' domains, how its inputs are drawn, and how
    wrong an implementation may be (``error_scale``, for the tolerance policy). A component with a
    ``draw`` has the differential property ``matches_reference`` over its ``variants``; its other
    properties register themselves with ``@prop(COMPONENT, ...)``, and the registry
    (spec/registry.py) collects the record."""

    name: str
    family: str
    shapes: str
    error_scale: Callable[[Mapping[str, Any]], float]
    properties: tuple[Property, ...] = ()
    bad_inputs: tuple[BadInput, ...] = ()
    dtypes: tuple[DType, ...] = ALL_DTYPES
    notes: str = ""
    # every argument of the signature with its domain (spec/domains.py), in the reference's order
    args: tuple[Arg, ...] = ()
    # the one draw protocol: (data, dtype, variant) -> the component's keyword arguments
    draw: Draw | None = None
    variants: tuple[Any, ...] = (None,)
    signature: str = ""  # derived from the reference when empty
    gradient: Gradient | None = None  # its vjp property, if it is differentiated

    @property
    def reference(self) -> Callable[..., Any]:
        """The oracle function of the same name (STYLE 1: the test looks the oracle up by name)."""
        return getattr(reference, self.name)


def _is_default(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return value is default
    return not isinstance(value, np.ndarray) and type(value) is type(default) and value == default


def describe_inputs(inputs: Mapping[str, Any]) -> str:
    """'q=(2, 3, 4, 8) float32, mask=(2, 1, 1, 5) bool, scale=None' for failure messages."""
    parts = []
    for key, value in inputs.items():
        if isinstance(value, np.ndarray):
            parts.append(f"{key}={value.shape} {value.dtype}")
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], Mapping):
            parts.append(f"{key}=[{len(value)} x {{{', '.join(value[0])}}}]")
        elif isinstance(value, Mapping) and any(
            isinstance(v, (Mapping, list)) for v in value.values()
        ):
            parts.append(f"{key}={{{', '.join(value)}}}")
        elif isinstance(value, Mapping):
            inner = ", ".join(f"{k}: {getattr(v, 'shape', v)}" for k, v in value.items())
            parts.append(f"{key}={{{inner}}}")
        else:
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


@dataclass
class Subject:
    """One adapter's function for one component at one dtype: what a conformance test checks."""

    adapter_name: str
    component: Component
    dtype: DType
    fn: Callable[..., Any]
    namespace: Any = None
    # Every comparison made in this test, for the report: (observed / allowed) ratios.
    comparisons: list[Comparison] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # The inputs of every adapter call this example made (siblings share it): what a declared
    # deviation's trigger is judged on.
    calls: list[Mapping[str, Any]] = field(default_factory=list)
    # Arguments left out of a call because they held the spec's default (see ``call``).
    omitted: set[str] = field(default_factory=set)

    def label(self, inputs: Mapping[str, Any]) -> str:
        return (
            f"[{self.component.name} | adapter={self.adapter_name} | dtype={self.dtype}] "
            f"inputs: {describe_inputs(inputs)}"
        )

    def draw(self, data: st.DataObject, variant: Any) -> dict[str, Any]:
        """The component's own draw at this dtype (for a property of a component that has one)."""
        draw = self.component.draw
        if draw is None:
            raise TypeError(f"component {self.component.name} has no draw")
        return draw(data, self.dtype, variant)

    def sibling(self, name: str) -> Subject:
        """The same adapter's function for another component, at the same dtype (Unsupported if
        absent)."""
        from spec.registry import COMPONENTS

        fn = getattr(self.namespace, name, None)
        if not callable(fn):
            raise Unsupported(
                f"adapter {self.adapter_name} does not offer {name}, which this property needs"
            )
        return Subject(
            self.adapter_name,
            COMPONENTS[name],
            self.dtype,
            fn,
            self.namespace,
            self.comparisons,
            calls=self.calls,
            omitted=self.omitted,
        )

    def case(
        self, inputs: Mapping[str, Any], expected_fn: Callable[..., Any] | None = None
    ) -> Case:
        return Case(self, dict(inputs), expected_fn or self.component.reference)

    def fail(self, inputs: Mapping[str, Any], message: str) -> NoReturn:
        said = "".join(f"\nthe library warned: {w}" for w in dict.fromkeys(self.warnings))
        if self.omitted:
            said += (
                f"\nsome calls left out {sorted(self.omitted)}, which held the spec's defaults "
                "(the adapter's own defaults ran)"
            )
        raise ConformanceError(f"{self.label(inputs)}\n{message}{said}", inputs)

    def _with_defaults_left_out(self, inputs: Mapping[str, Any]) -> Mapping[str, Any]:
        """Every other call of an example leaves out the arguments that hold the spec's default, so
        the adapter's own defaults are exercised too (an adapter whose eps defaults to 1e-6 is
        caught); the next call passes them, so a property comparing two calls compares both ways."""
        if len(self.calls) % 2 == 0:
            return inputs
        left = {
            a.name
            for a in self.component.args
            if a.has_default and a.name in inputs and _is_default(inputs[a.name], a.default)
        }
        self.omitted |= left
        return {k: v for k, v in inputs.items() if k not in left}

    def call(
        self, inputs: Mapping[str, Any], expected: np.ndarray | Callable[[], np.ndarray]
    ) -> np.ndarray:
        """Call the adapter; refuse exceptions, non-arrays, wrong shape or dtype, and NaN/inf.
        ``expected`` may be a function giving the oracle's output: it is evaluated only once the
        adapter has returned (an example the adapter cannot express costs no oracle)."""
        # Library warnings are not failures (the output is judged), but a failure reports them. The
        # test config turns warnings into errors; some libraries warn only once per process, which
        # would make an adapter's result depend on test order.
        self.calls.append(inputs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                got = self.fn(**self._with_defaults_left_out(inputs))
            except Unsupported:
                raise
            except (
                Exception
            ) as e:  # an adapter that crashes fails its own test, and the run goes on
                self.fail(inputs, f"adapter raised {type(e).__name__}: {e}")
        self.warnings += [f"{w.category.__name__}: {w.message}" for w in caught]
        if callable(expected):
            expected = expected()
        if not isinstance(got, np.ndarray):
            self.fail(inputs, f"adapter returned {type(got).__name__}; expected a NumPy array")
        want_dtype = expected.dtype if expected.dtype.kind in "biu" else self.dtype.np_dtype
        if got.shape != expected.shape or got.dtype != want_dtype:
            self.fail(
                inputs,
                f"adapter returned {got.shape} {got.dtype}; expected {expected.shape} {want_dtype}",
            )
        # non-finite values are refused, except an infinity the oracle has at the same place (the
        # -inf log-sum-exp of a row that sees no key) and NaN where the oracle has NaN (the
        # fully_masked_row=nan profile)
        wide = got.astype(np.float64) if got.dtype.kind not in "biu" else None
        if wide is not None:
            with np.errstate(invalid="ignore"):
                same = (wide == expected) | (np.isnan(wide) & np.isnan(expected))
            fine = np.isfinite(wide) | same
        if wide is not None and not fine.all():
            bad = tuple(int(i) for i in np.argwhere(~fine)[0])
            self.fail(inputs, f"adapter returned non-finite values, first at {bad}: {got[bad]}")
        return got

    def check(self, comparison: Comparison, inputs: Mapping[str, Any]) -> None:
        self.comparisons.append(comparison)
        if not comparison.ok:
            self.fail(inputs, comparison.report())


class Case:
    """One set of inputs: the adapter's output, the oracle's, and the policy's bound, each computed
    once."""

    def __init__(self, subject: Subject, inputs: dict[str, Any], expected_fn: Callable[..., Any]):
        self.subject = subject
        self.inputs = inputs
        self.expected_fn = expected_fn

    @cached_property
    def expected(self) -> np.ndarray:
        return np.asarray(oracle(self.expected_fn, self.inputs, self.subject.dtype))

    @cached_property
    def got(self) -> np.ndarray:
        return self.subject.call(self.inputs, lambda: self.expected)

    @cached_property
    def bound(self) -> Bound:
        component = self.subject.component
        with np.errstate(invalid="ignore"):
            scale = component.error_scale(self.inputs)
        if not np.isfinite(scale):
            # a scale read off the oracle's output is NaN where the fully_masked_row=nan profile put
            # NaN (an empty row's NaN reaches every later layer): the magnitudes of the canonical
            # evaluation, whose empty rows are 0, bound the finite entries
            with semantics(fully_masked_row=CANONICAL["fully_masked_row"]):
                scale = component.error_scale(self.inputs)
        return bound_for(component.reference, self.inputs, self.subject.dtype, self.expected, scale)

    def assert_matches_oracle(self, what: str = "output", select: np.ndarray | None = None) -> None:
        """got agrees with the oracle within the policy's bound (optionally on ``select`` only)."""
        self.subject.check(compare(self.got, self.expected, self.bound, what, select), self.inputs)

    def assert_rows_without_keys(self, rows: np.ndarray) -> None:
        """The entries ``rows`` (a boolean array of the output's shape) belong to query rows that
        see no key: they hold the active profile's value (reference/semantics.py), exactly 0
        (canonical), NaN (``nan``), or the oracle's 1/S weights / mean of V within the bound
        (``uniform``)."""
        row = convention("fully_masked_row")
        if row == "uniform":
            self.assert_matches_oracle("rows that see no key (fully_masked_row=uniform)", rows)
            return
        got = self.got.astype(np.float64)
        wrong = rows & ~(np.isnan(got) if row == "nan" else got == 0)
        if wrong.any():
            i = tuple(int(t) for t in np.argwhere(wrong)[0])
            want = "NaN (fully_masked_row=nan)" if row == "nan" else "exactly 0"
            self.subject.fail(
                self.inputs,
                f"query row {i[:-1]} sees no key and returned {got[i]:.6g} at {i}; the spec says "
                f"{want}",
            )

    def assert_equivalent(
        self, got: np.ndarray, other: Case, what: str, select: np.ndarray | None = None
    ) -> None:
        """A metamorphic check: ``got`` (derived from this case's output) equals ``other``'s output,
        within the sum of both bounds, because both inputs have the same exact answer there."""
        self.subject.check(
            compare(got, other.got, self.bound + other.bound, what, select), self.inputs
        )


def matches_reference(
    draw: Draw, variants: tuple[str | None, ...] = (None,), dtypes: tuple[DType, ...] = ALL_DTYPES
) -> Property:
    """The differential property of a component whose inputs come from ``draw``."""

    def check(subject: Subject, data: st.DataObject, variant: str | None) -> None:
        subject.case(draw(data, subject.dtype, variant)).assert_matches_oracle()

    return Property(
        "matches_reference",
        "The adapter agrees with the float64 oracle within the tolerance policy.",
        check,
        variants,
        dtypes,
    )


# Properties registered by decorator: component name -> its properties, in the order they were
# declared.
REGISTERED: dict[str, list[Property]] = {}


def prop(
    *components: Component,
    variants: tuple[Any, ...] = (None,),
    dtypes: tuple[DType, ...] = ALL_DTYPES,
    kind: str = "forward",
    name: str | None = None,
) -> Callable[[Check], Check]:
    """Register the decorated check as a property of each component; its name and doc are the
    function's."""

    def register(check: Check) -> Check:
        found = Property(
            name or check.__name__, inspect.getdoc(check) or "", check, variants, dtypes, kind
        )
        for component in components:
            REGISTERED.setdefault(component.name, []).append(found)
        return check

    return register


def differential(component: Component) -> tuple[Property, ...]:
    """matches_reference over the component's draw and variants, if it has a draw."""
    if component.draw is None:
        return ()
    return (matches_reference(component.draw, component.variants, component.dtypes),)
