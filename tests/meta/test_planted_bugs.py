"""The suite catches deliberately broken adapters, and the failure message says what broke where."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings

from adapters import Adapter
from spec.core import ConformanceError
from spec.dtypes import BY_NAME
from spec.registry import COMPONENTS
from tests.meta import (
    planted,
    planted_layers,
    planted_layouts,
    planted_paged,
    planted_positions,
    planted_seq2seq,
    planted_tiled,
    planted_variants,
)
from transformer_conformance import runner
from transformer_conformance.targets import Target

# Enough examples to reach the bug, no shrinking (the meta-test wants "caught", not a minimal
# example).
HUNT = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def hunt(target: Target) -> ConformanceError | None:
    """Run one conformance check as the conformance tests do (the runner); return the failure it
    finds."""
    try:
        runner.run(
            target.id,
            target.subject,
            target.body(),
            declared=None,
            base=HUNT,
            max_examples=HUNT.max_examples,
        )
    except ConformanceError as e:
        return e
    except runner.Outcome:  # unsupported: nothing found
        return None
    return None


def _target(
    namespace: object, component: str, check: str, variant: str | None, dtype: str
) -> Target:
    spec = COMPONENTS[component]
    if check.startswith("refuses["):
        found = next(b for b in spec.bad_inputs if b.name == check[len("refuses[") : -1])
    else:
        found = next(p for p in spec.properties if p.name == check)
    return Target(Adapter(namespace.name, namespace), spec, found, variant, BY_NAME[dtype])


# the planted backward passes are torch and jax code: without them installed, they are not planted
try:
    from tests.meta import planted_backward

    BACKWARD, BACKWARD_TWINS = planted_backward.CAUGHT_BY, planted_backward.TWINS
except ImportError:
    BACKWARD, BACKWARD_TWINS = [], []

CAUGHT_BY = (
    planted.CAUGHT_BY
    + planted_layers.CAUGHT_BY
    + planted_seq2seq.CAUGHT_BY
    + planted_variants.CAUGHT_BY
    + planted_positions.CAUGHT_BY
    + planted_layouts.CAUGHT_BY
    + planted_paged.CAUGHT_BY
    + BACKWARD
)


@pytest.mark.parametrize(
    "namespace,component,check,variant,dtype",
    CAUGHT_BY,
    ids=[f"{c[0].name}-{c[1]}.{c[2]}" for c in CAUGHT_BY],
)
def test_planted_bug_is_caught(
    namespace: object, component: str, check: str, variant: str | None, dtype: str
) -> None:
    failure = hunt(_target(namespace, component, check, variant, dtype))
    assert failure is not None, (
        f"planted bug {namespace.name} was NOT caught by {component}.{check}[{variant}] at {dtype}"
    )
    message = str(failure)
    for part in (component, f"adapter={namespace.name}", f"dtype={dtype}"):
        assert part in message, f"failure message lacks {part!r}: {message[:300]}"


@pytest.mark.parametrize(
    "namespace,component,check,variant,dtype",
    CAUGHT_BY[:4],
    ids=[f"reference-{c[1]}.{c[2]}" for c in CAUGHT_BY[:4]],
)
def test_reference_passes_the_same_hunt(
    namespace: object, component: str, check: str, variant: str | None, dtype: str
) -> None:
    """Control: the same hunt on the correct reference finds nothing (the check is not just failing
    everything)."""
    import reference as ref

    assert hunt(_target(ref, component, check, variant, dtype)) is None


@pytest.mark.parametrize("bug", [None, *planted_tiled.BUGS], ids=lambda b: b or "correct")
def test_tiled_kernel_bugs_are_caught_and_the_correct_kernel_conforms(bug: str | None) -> None:
    """The tiled kernels of tests/meta/planted_tiled.py against scaled_dot_product_attention's whole
    default run (every property, variant and dtype; ci profile): the correct one passes, each
    planted bug fails."""
    from transformer_conformance.meta import first_failure

    kernel = planted_tiled.correct_tiled if bug is None else planted_tiled.PLANTED[bug]
    failed = first_failure("scaled_dot_product_attention", kernel)
    if bug is None:
        assert failed is None, f"the correct tiled kernel fails {failed}"
    else:
        assert failed is not None, f"planted tiled bug {bug} is not caught by the default run"


# planted modules with a bug-free twin: the twin must pass wherever one of their bugs is caught
TWINNED = [
    (m.clean, c)
    for m in (planted_variants, planted_positions, planted_layouts, planted_paged)
    for c in m.CAUGHT_BY
] + [(twin[0], twin) for twin in BACKWARD_TWINS]


@pytest.mark.parametrize(
    "clean,caught",
    TWINNED,
    ids=[f"{c.name}-{b[1]}.{b[2]}[{b[3]}]-{b[4]}" for c, b in TWINNED],
)
def test_planted_bugs_twin_without_the_bug_passes(clean: object, caught: tuple) -> None:
    """The planted code with no bug on passes where each of its bugs is caught: a catch is the
    bug's, not the planting's."""
    _, component, check, variant, dtype = caught
    failure = hunt(_target(clean, component, check, variant, dtype))
    assert failure is None, f"the bug-free twin failed {component}.{check}[{variant}]: {failure}"
