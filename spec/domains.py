"""Argument domains: what each argument of a component may be, which parts of that domain every run
must draw, and the mechanical mutants of the reference the suite must catch.

An ``Arg`` is one parameter of a component's signature: its domain in words (printed next to the
signature by ``explain``), its kind, which decides its mutants, and its regions: named predicates
over drawn inputs marking the boundaries and special values of the domain (zero, negative,
non-dyadic, extreme magnitudes, the smallest and largest sizes, ties). Two meta-tests hold the spec
to it: tests/meta/test_domains.py draws every property's inputs and asserts every region is drawn;
tests/meta/test_mutants.py replaces each argument of the reference by its default, perturbs it
slightly and swaps it with an argument of its kind, and asserts the component's properties catch
every such mutant, or that the Arg's ``invisible`` says why no property can.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUIRED = object()  # an argument without a default

Inputs = Mapping[str, Any]
Predicate = Callable[[Any, Inputs], bool]
Change = Callable[[Any, Inputs], Any]

# Kinds, and what "perturbed slightly" means for each (spec/domains.perturb):
#   array   floating array           times 1 + 1e-3
#   mask    bool or additive mask    rows shifted by one query (keys, for a single row)
#   number  real scalar              times 1 + 1e-3 (0 -> 1e-3)
#   int     integer                  plus one
#   tokens  integer id array         plus one, modulo the vocabulary
#   choice  one of ``choices``       the next choice
#   flag    bool                     negated
#   params  dict of arrays           each entry its own argument ("params.w_q")
#   other   anything else            no perturbation
KINDS = ("array", "mask", "number", "int", "tokens", "choice", "flag", "params", "other")


@dataclass(frozen=True)
class Region:
    """A named part of an argument's domain that the strategies must draw."""

    name: str
    holds: Predicate

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Arg:
    """One argument of a component's signature."""

    name: str
    domain: str
    kind: str = "array"
    default: Any = REQUIRED
    choices: tuple[Any, ...] = ()
    regions: tuple[Region, ...] = ()
    # a perturbation that keeps the argument in its domain where the kind's default would leave it
    perturb: Change | None = None
    # mutant name -> why no property can see that change
    invisible: Mapping[str, str] = field(default_factory=dict)
    # entries of a params dict that are arguments in their own right: name -> Arg
    entries: tuple[Arg, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Arg {self.name}: kind must be one of {KINDS}; got {self.kind!r}")

    @property
    def has_default(self) -> bool:
        return self.default is not REQUIRED

    def signature_text(self) -> str:
        return self.name if not self.has_default else f"{self.name}={self.default!r}"


def region(name: str, holds: Predicate) -> Region:
    return Region(name, holds)


def equals(value: Any) -> Predicate:
    """The predicate "the argument is ``value``": the region of one choice of a choice argument."""
    return lambda v, i: v == value


def _get(inputs: Inputs, path: str) -> Any:
    value: Any = inputs
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def _set(inputs: Inputs, path: str, new: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {**inputs, head: _set(inputs[head], rest, new) if rest else new}


def _drop(inputs: Inputs, path: str) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    if rest:
        return {**inputs, head: _drop(inputs[head], rest)}
    return {k: v for k, v in inputs.items() if k != head}


def perturb(arg: Arg, value: Any, inputs: Inputs) -> Any:
    """The argument changed slightly, as its kind says (None: no perturbation applies)."""
    if arg.perturb is not None:
        return arg.perturb(value, inputs)
    if value is None:
        return None
    if arg.kind == "array":
        return (value.astype(np.float64) * (1 + 1e-3)).astype(value.dtype)
    if arg.kind == "mask":
        axis = -2 if value.ndim >= 2 and value.shape[-2] > 1 else -1
        return np.roll(value, 1, axis=axis) if value.shape[axis] > 1 else None
    if arg.kind == "number":
        return float(value) * (1 + 1e-3) if value else 1e-3
    if arg.kind == "int":
        return int(value) + 1
    if arg.kind == "tokens":  # the next id, staying in the vocabulary of the table beside them
        V = next(
            (
                int(v.shape[0])
                for v in inputs.values()
                if isinstance(v, np.ndarray) and v.dtype.kind == "f"
            ),
            None,
        )
        return (value + 1) % V if V else value + 1
    if arg.kind == "choice":
        choices = list(arg.choices)
        return choices[(choices.index(value) + 1) % len(choices)] if value in choices else None
    if arg.kind == "flag":
        return not value
    return None


@dataclass(frozen=True)
class Mutant:
    """The reference with one argument changed before it is called."""

    component: str
    name: str
    change: Callable[[Inputs], dict[str, Any]]
    why_invisible: str | None = None

    @property
    def is_swap(self) -> bool:
        return self.name.endswith(": swapped")

    def applies(self, inputs: Inputs) -> bool:
        """Whether the mutant changes these inputs at all."""
        return differs(self.change(inputs), inputs)


def differs(a: Any, b: Any) -> bool:
    """Whether two inputs differ in any value (arrays by value, the rest by equality)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() != b.keys() or any(differs(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) != len(b) or any(differs(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return not (
            isinstance(a, np.ndarray)
            and isinstance(b, np.ndarray)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and np.array_equal(a, b, equal_nan=True)
        )
    return bool(a != b) if not (a is None or b is None) else a is not b

    def __str__(self) -> str:
        return f"{self.component}: {self.name}"


def _flat(args: tuple[Arg, ...]) -> list[tuple[str, Arg]]:
    """(path, Arg) for every argument and every declared entry of a params argument."""
    out: list[tuple[str, Arg]] = []
    for arg in args:
        out.append((arg.name, arg))
        out += [(f"{arg.name}.{entry.name}", entry) for entry in arg.entries]
    return out


def mutants(component: str, args: tuple[Arg, ...]) -> list[Mutant]:
    """Every mechanical mutant of a component's reference: each argument replaced by its default,
    perturbed slightly, and swapped with each other argument of its kind."""
    found: list[Mutant] = []
    flat = _flat(args)
    for path, arg in flat:
        if arg.kind == "params":
            continue  # its entries are the arguments
        if arg.has_default:

            def to_default(inputs: Inputs, path: str = path, arg: Arg = arg) -> dict[str, Any]:
                if "." in path:  # an entry of a params dict: absent means the default
                    if _get(inputs, path) is None:
                        return dict(inputs)
                    return (
                        _drop(inputs, path)
                        if arg.default is None
                        else _set(inputs, path, arg.default)
                    )
                return _set(inputs, path, arg.default)

            name = f"{path}: replaced by its default ({arg.default!r})"
            found.append(Mutant(component, name, to_default, arg.invisible.get("default")))

        def perturbed(inputs: Inputs, path: str = path, arg: Arg = arg) -> dict[str, Any]:
            value = _get(inputs, path)
            new = perturb(arg, value, inputs) if value is not None else None
            return dict(inputs) if new is None else _set(inputs, path, new)

        if arg.kind != "other" or arg.perturb is not None:  # "other": only a stated perturbation
            found.append(
                Mutant(
                    component,
                    f"{path}: perturbed slightly",
                    perturbed,
                    arg.invisible.get("perturbed"),
                )
            )
    for i, (path_a, a) in enumerate(flat):
        for path_b, b in flat[i + 1 :]:
            # siblings only: two top-level arguments, or two entries of one params argument
            if (
                a.kind != b.kind
                or a.kind in ("params", "other")
                or path_a.rpartition(".")[0] != path_b.rpartition(".")[0]
            ):
                continue

            def swapped(inputs: Inputs, pa: str = path_a, pb: str = path_b) -> dict[str, Any]:
                va, vb = _get(inputs, pa), _get(inputs, pb)
                if (
                    va is None
                    or vb is None
                    or getattr(va, "shape", None) != getattr(vb, "shape", None)
                ):
                    return dict(inputs)
                if isinstance(va, np.ndarray) and (va.dtype != vb.dtype):
                    return dict(inputs)
                return _set(_set(inputs, pa, vb), pb, va)

            why = a.invisible.get(f"swapped with {b.name}") or b.invisible.get(
                f"swapped with {a.name}"
            )
            found.append(Mutant(component, f"{path_a} <-> {path_b}: swapped", swapped, why))
    return found
