"""The runner's bookkeeping: which examples count as a passing test's margin (observed /
allowed)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, Phase, settings

import reference
from adapters import Adapter, Deviation
from spec.core import Unsupported
from spec.dtypes import FLOAT32
from spec.registry import COMPONENTS
from transformer_conformance import runner
from transformer_conformance.targets import Target

FEW = settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)


def _tally(
    declared: Deviation | None,
    namespace: object = reference,
    tally: runner.Tally | None = None,
    check_name: str = "matches_reference",
    variant: str = "padding",
) -> runner.Tally:
    """One scaled_dot_product_attention target of ``namespace`` run over FEW examples."""
    spec = COMPONENTS["scaled_dot_product_attention"]
    check = next(p for p in spec.properties if p.name == check_name)
    target = Target(Adapter("numpy", namespace), spec, check, variant, FLOAT32)
    tally = runner.Tally() if tally is None else tally
    runner.run(
        target.id,
        target.subject,
        target.body(),
        declared=declared,
        base=FEW,
        max_examples=FEW.max_examples,
        tally=tally,
    )
    return tally


@pytest.mark.parametrize(
    ("covers", "counted"), [(False, True), (True, False)], ids=["outside", "inside"]
)
def test_examples_inside_a_triggered_deviation_are_no_margin(covers: bool, counted: bool) -> None:
    """An example whose inputs match a declared deviation's trigger gives no observed / allowed,
    even when it passes: jax's uniform average over a hidden key once passed at 0.97 of the bound
    and was reported as a conforming test's margin."""
    tally = _tally(Deviation("planted", when=lambda inputs: covers, trigger="planted"))
    assert tally.deviations == 0, tally  # the oracle itself shows no deviation
    assert bool(tally.ratios) is counted, (covers, tally.ratios)


@pytest.mark.parametrize("strict", [False, True], ids=["default", "require_support"])
def test_require_support_fails_a_test_nothing_could_express(strict: bool) -> None:
    """An adapter whose every vjp raises Unsupported: skipped by default (a third party's partial
    support), a failure (exit 1) under --require-support."""
    import subprocess
    import sys
    from pathlib import Path

    command = [
        sys.executable,
        "-m",
        "transformer_conformance.cli",
        "--adapter",
        "tests.meta.planted_unsupported:adapter",
        "--component",
        "softmax",
        "-k",
        "vjp",
        "-p",
        "no:xdist",
        "-q",
        *(["--require-support"] if strict else []),
    ]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == (1 if strict else 0), done.stdout[-2000:] + done.stderr[-2000:]


def test_derandomized_examples_depend_on_the_target_id_alone() -> None:
    """Under a derandomized profile the examples come from the target's id, not from the source of
    the function that runs them (an edit of the runner re-drew every CI example before)."""
    from hypothesis import settings as hsettings
    from hypothesis import strategies as hst

    from transformer_conformance.runner import _run

    def drawn(digest: str, variant: int) -> list[int]:
        seen: list[int] = []
        if variant == 0:

            def example(data: hst.DataObject) -> None:
                seen.append(data.draw(hst.integers(0, 10**9)))
        else:  # another function, another source: the same examples

            def example(data: hst.DataObject) -> None:
                value = data.draw(hst.integers(0, 10**9))
                seen.append(value)

        _run(
            example, hsettings(max_examples=5, derandomize=True, database=None), digest, None, None
        )
        return seen

    assert drawn("target-a", 0) == drawn("target-a", 1)
    assert drawn("target-a", 0) != drawn("target-b", 0)


@pytest.mark.parametrize("everywhere", [False, True], ids=["per_example", "everywhere"])
def test_an_everywhere_refusal_stops_the_drawing(everywhere: bool) -> None:
    """Unsupported(..., everywhere=True) ends a test after EVERYWHERE_DRAWS refused examples; a
    plain Unsupported keeps Hypothesis drawing for one the adapter can express (hundreds)."""

    class Refuses:
        def __getattr__(self, name: str) -> object:
            return getattr(reference, name)

        def scaled_dot_product_attention(self, *args: object, **kwargs: object) -> object:
            raise Unsupported("planted refusal", everywhere=everywhere)

    tally = runner.Tally()
    with pytest.raises(runner.Outcome, match="planted refusal") as verdict:
        tally = _tally(None, Refuses(), tally)
    assert verdict.value.kind == "unsupported"
    assert tally.supported == 0, tally
    if everywhere:
        assert tally.examples == runner.EVERYWHERE_DRAWS, tally
    else:
        assert tally.examples > 10 * runner.EVERYWHERE_DRAWS, tally


class _Wrong:
    """scaled_dot_product_attention off by one everywhere: every example shows a deviation."""

    @staticmethod
    def scaled_dot_product_attention(q, k, v, mask=None, scale=None, causal=None):
        return reference.scaled_dot_product_attention(q, k, v, mask, scale, causal) + 1.0


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ((("scale",), True), {"scale"}),
        ((("scale",), True, ("window",), False), {"scale"}),
        ((("scale",), True, ("window",), True), {"scale", "window"}),
        (((), True), {"*"}),
    ],
    ids=["one", "only_the_part_that_showed", "both", "unstated"],
)
def test_a_tally_says_what_the_deviations_seen_concern(parts: tuple, expected: set[str]) -> None:
    """The scorecard counts a deviation against the columns it concerns (Deviation.concerns): the
    tally keeps the concerns of the parts whose trigger held, "*" for a part that states none."""
    declared = tuple(
        Deviation(f"planted {i}", when=lambda inputs, on=on: on, trigger="planted", concerns=c)
        for i, (c, on) in enumerate(zip(parts[::2], parts[1::2], strict=True))
    )
    combined = Adapter("wrong", _Wrong, {"scaled_dot_product_attention.*": declared}).deviation(
        "scaled_dot_product_attention", "matches_reference", "padding", "float32"
    )
    tally = _tally(combined, namespace=_Wrong)
    assert tally.deviations > 0, tally
    assert tally.concerns == expected, (tally.concerns, expected)
