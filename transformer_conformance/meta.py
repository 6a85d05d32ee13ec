"""The spec held to its own argument domains (spec/domains.py): which regions the strategies draw,
and which mechanical mutants of the reference the properties catch.

    python -m transformer_conformance.meta mutants [COMPONENT ...]    # the mutant table
    (docs/MUTANTS.md) python -m transformer_conformance.meta coverage [COMPONENT ...]   # regions
    never drawn

Both run the component's forward properties exactly as the conformance tests do (the runner, the
derandomized ``ci`` profile): coverage with an adapter that records its inputs, the mutants with the
reference whose one argument is changed before it computes.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from hypothesis import Phase, settings

import reference
from adapters import Adapter
from spec.core import Component, ConformanceError
from spec.domains import Mutant, mutants
from spec.registry import COMPONENTS
from transformer_conformance import runner
from transformer_conformance.targets import Target

# The default profile of CI: derandomized, so the table is the same on every run.
# No shrinking: a hunt asks whether a property catches the mutant, not for a minimal example, and
# shrinking a failing stack example re-ran its extended-precision oracle for ~10 s per mutant.
PROFILE = settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


def _namespace(name: str, **override: Callable[..., Any]) -> SimpleNamespace:
    functions = {c: getattr(reference, c) for c in COMPONENTS}
    return SimpleNamespace(name=name, **{**functions, **override})


def forward_targets(component: Component, namespace: Any) -> Iterator[Target]:
    """Every forward property x variant x dtype of the component, matches_reference first."""
    adapter = Adapter(namespace.name, namespace)
    props = sorted(
        (p for p in component.properties if p.kind == "forward"),
        key=lambda p: p.name != "matches_reference",
    )
    for prop in props:
        for variant in prop.variants:
            for dtype in (d for d in prop.dtypes if d in component.dtypes):
                yield Target(adapter, component, prop, variant, dtype)


class _Recorded(Exception):
    """Raised by the recording adapter once it holds an example's inputs: the example goes no
    further."""


def drawn_inputs(component: Component) -> list[Mapping[str, Any]]:
    """The inputs the component's forward properties hand the adapter first in each example, over a
    ci-profile run (the draws alone: the recording adapter stops each example at its first call)."""
    seen: list[Mapping[str, Any]] = []

    defaults = {a.name: a.default for a in component.args if a.has_default}

    def record(**inputs: Any) -> Any:
        seen.append(
            {**defaults, **inputs}
        )  # the harness leaves out arguments that hold their default
        raise _Recorded

    namespace = _namespace("recorder", **{component.name: record})
    for target in forward_targets(component, namespace):
        body = target.body()

        def drawn(subject: Any, data: Any, body: Callable[..., None] = body) -> None:
            try:
                body(subject, data)
            except (
                ConformanceError
            ) as e:  # the harness reports the adapter's exception as a failure
                if not isinstance(e.__context__, _Recorded):
                    raise

        runner.run(target.id, target.subject, drawn, declared=None, base=PROFILE, max_examples=10)
    return seen


def uncovered(component: Component) -> list[str]:
    """'arg: region' for every region of the component's arguments that no drawn input falls in."""
    inputs = drawn_inputs(component)
    missing = []
    for arg in component.args:
        for part in (arg, *arg.entries):
            path = part.name if part is arg else f"{arg.name}.{part.name}"
            for r in part.regions:
                if not any(_holds(r.holds, _value(i, path), i) for i in inputs):
                    missing.append(f"{path}: {r.name}")
    return missing


def _value(inputs: Mapping[str, Any], path: str) -> Any:
    value: Any = inputs
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _holds(predicate: Callable[..., bool], value: Any, inputs: Mapping[str, Any]) -> bool:
    try:
        with (
            warnings.catch_warnings(),
            np.errstate(all="ignore"),
        ):  # -inf - -inf in a predicate is no error
            warnings.simplefilter("ignore")
            return bool(predicate(value, inputs))
    except (AttributeError, KeyError, TypeError, IndexError, ValueError):
        return False  # the region does not apply to these inputs (an absent argument)


@dataclass(frozen=True)
class Verdict:
    mutant: Mutant
    caught_by: str | None  # the first target that failed
    how: str  # its failure's first line, or why no property can see it

    @property
    def ok(self) -> bool:
        return self.caught_by is not None or self.mutant.why_invisible is not None


def first_failure(component: str, namespace: Any) -> str | None:
    """The first of the component's forward targets (ci profile) that a namespace's function fails,
    or None."""
    for target in forward_targets(COMPONENTS[component], namespace):
        try:
            runner.run(
                target.id,
                target.subject,
                target.body(),
                declared=None,
                base=PROFILE,
                max_examples=10,
            )
        except ConformanceError:
            return target.id
        except runner.Outcome:
            continue
    return None


def hunt(mutant: Mutant, drawn: list[Mapping[str, Any]] | None = None) -> Verdict | None:
    """Run the component's properties against the mutant until one fails. A mutant that changes none
    of the drawn inputs is not hunted: a swap of two arguments never of one shape does not apply
    (None); a default or a perturbation that changes nothing means the argument's domain is never
    drawn."""
    component = COMPONENTS[mutant.component]
    if drawn is not None and not any(mutant.applies(i) for i in drawn):
        if mutant.is_swap:
            return None
        return Verdict(
            mutant,
            None,
            mutant.why_invisible or "NOT CAUGHT: changes no drawn input (its domain is not drawn)",
        )
    fn = component.reference

    defaults = {a.name: a.default for a in component.args if a.has_default}

    def mutated(**inputs: Any) -> Any:
        return fn(
            **mutant.change({**defaults, **inputs})
        )  # the harness leaves out arguments at their default

    for target in forward_targets(component, _namespace("mutant", **{component.name: mutated})):
        try:
            runner.run(
                target.id,
                target.subject,
                target.body(),
                declared=None,
                base=PROFILE,
                max_examples=10,
            )
        except ConformanceError as e:
            lines = [line for line in str(e).splitlines()[1:] if line.strip()]
            return Verdict(
                mutant, target.property_name + f"@{target.dtype}", lines[0][:160] if lines else ""
            )
        except runner.Outcome:
            continue
    return Verdict(mutant, None, mutant.why_invisible or "NOT CAUGHT")


def verdicts(names: list[str] | None = None) -> Iterator[Verdict]:
    for name, component in COMPONENTS.items():
        if names and name not in names:
            continue
        drawn = drawn_inputs(component)
        for mutant in mutants(name, component.args):
            verdict = hunt(mutant, drawn)
            if verdict is not None:
                yield verdict


def table(rows: list[Verdict]) -> str:
    lines = [
        "| component | mutant | caught by | how |",
        "|---|---|---|---|",
    ]
    for v in rows:
        caught = (
            f"`{v.caught_by}`"
            if v.caught_by
            else ("invisible" if v.mutant.why_invisible else "**NOT CAUGHT**")
        )
        lines.append(
            f"| {v.mutant.component} | {v.mutant.name} | {caught} | {v.how.replace('|', '/')} |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    command, names = (argv[0], argv[1:]) if argv else ("mutants", [])
    if command == "coverage":
        missing = {n: uncovered(c) for n, c in COMPONENTS.items() if not names or n in names}
        for name, regions in missing.items():
            for r in regions:
                print(f"{name}: {r}")
        return 1 if any(missing.values()) else 0
    from spec import SPEC_VERSION

    chosen = {n: c for n, c in COMPONENTS.items() if not names or n in names}
    generated = sum(len(mutants(n, c.args)) for n, c in chosen.items())
    rows = list(verdicts(names or None))
    print(
        f"# Mechanical mutants of the reference\n\n`make mutants` (`python -m "
        f"transformer_conformance.meta mutants [COMPONENT ...]`), spec {SPEC_VERSION}: each "
        "argument of each component replaced by its default, perturbed slightly, swapped with a "
        "sibling of its kind (spec/domains.py), hunted with the component's own properties on the "
        f"derandomized default profile. {generated} mutants of {len(chosen)} components were "
        f"generated; {generated - len(rows)} do not apply (swaps of two arguments never drawn "
        "with one shape: the swap changes no drawn input) and are not listed.\n"
    )
    print(table(rows))
    caught = sum(v.caught_by is not None for v in rows)
    invisible = sum(v.caught_by is None and v.mutant.why_invisible is not None for v in rows)
    print(
        f"\n{len(rows)} mutants: {caught} caught, {invisible} explained as invisible, "
        f"{len(rows) - caught - invisible} not caught"
    )
    return 0 if all(v.ok for v in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
