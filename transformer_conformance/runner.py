"""Run one conformance target over Hypothesis examples and say what happened.

A target is one adapter x component x property (or bad input) x variant x dtype (``targets.py``).
Each example draws inputs, calls the adapter and checks; this module decides what the run as a whole
means, so that an outcome does not depend on which example happened to come first:

- An example the adapter cannot express (it raised ``Unsupported``) is counted, rejected, and the
  run goes on with examples it can express; Hypothesis keeps drawing until the profile's number of
  supported examples is reached (or it has tried ten times as many). Only a target with fewer than
  ``MIN_SUPPORTED`` supported examples is reported unsupported, with "N of M examples unsupported"
  and the reasons. An adapter that says its reason holds for every example
  (``Unsupported(..., everywhere=True)``) ends the drawing after ``EVERYWHERE_DRAWS`` of them.
- A declared deviation is judged over all examples: the run never stops at the first difference and
  reports "seen in N of M examples". When no example shows it, a dedicated search
  (``CONFIRM_FACTOR`` times the examples, steered by Hypothesis' targeting towards the largest
  observed / allowed error) runs before the target is said to conform.
- A failure carries the command that reruns exactly that example (the test id, the adapter, the
  Hypothesis reproduction blob) and the path of the failing inputs saved as .npz (``failures.py``).
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, reject, reproduce_failure, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis import target as hypothesis_target
from hypothesis.errors import Unsatisfiable

from adapters import Deviation
from spec.core import ConformanceError, Subject, Unsupported

# A target needs this many examples the adapter can express before its verdict counts.
MIN_SUPPORTED = 3
# A declared deviation that no example showed gets this many times the examples, targeted, before
# the target is reported as conforming ("the declaration may be stale").
CONFIRM_FACTOR = 5
# Examples an adapter refused with Unsupported(..., everywhere=True), none expressed, before the run
# stops drawing (the reason does not depend on the values, so hundreds more would say the same).
EVERYWHERE_DRAWS = 3
# Hypothesis' targeting needs a finite score; an infinite observed / allowed (allowed 0) is capped
# here.
_SCORE_CAP = 1e9


@dataclass
class Tally:
    """What the examples of one run did."""

    examples: int = 0  # examples run (unsupported ones included)
    unsupported: Counter[str] = field(default_factory=Counter)  # reason -> examples
    everywhere: int = 0  # of them, refused with Unsupported(..., everywhere=True)
    deviations: int = 0  # examples in which a declared deviation showed
    deviation_message: str = ""  # the first such example's failure
    seen: Counter[str] = field(default_factory=Counter)  # which declared deviation, per example
    concerns: set[str] = field(default_factory=set)  # what the deviations seen are about
    ratios: list[float] = field(default_factory=list)  # observed / allowed of every comparison
    errors: list[tuple[float, float]] = field(default_factory=list)  # (observed, allowed) of each
    warnings: Counter[str] = field(
        default_factory=Counter
    )  # what the adapter's libraries warned, per example
    failure_inputs: dict[str, Any] | None = None  # the last failing example's inputs

    @property
    def supported(self) -> int:
        return self.examples - sum(self.unsupported.values())

    def unsupported_text(self) -> str:
        reasons = "; ".join(f"{reason} ({n})" for reason, n in self.unsupported.most_common(3))
        return (
            f"{sum(self.unsupported.values())} of {self.examples} examples unsupported: {reasons}"
        )


class _NoneExpressible(BaseException):
    """Stops Hypothesis' drawing (it catches Exceptions as failures, not this): the adapter said
    every example is unsupported."""


class Outcome(Exception):
    """The run's verdict when it is not a plain pass or a failure: unsupported, or a deviation
    seen."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind, self.reason = kind, reason


Body = Callable[[Subject, st.DataObject], None]


def _example(
    tally: Tally, make_subject: Callable[[], Subject], body: Body, declared: Deviation | None
) -> Callable[..., None]:
    def example(data: st.DataObject) -> None:
        tally.examples += 1
        subject = make_subject()
        deviated = False
        try:
            body(subject, data)
        except Unsupported as e:
            tally.unsupported[str(e)] += 1
            tally.everywhere += bool(getattr(e, "everywhere", False))
            if tally.everywhere >= EVERYWHERE_DRAWS and tally.supported == 0:
                raise _NoneExpressible() from e
            reject()  # not counted as an example: Hypothesis draws another
        except ConformanceError as e:
            tally.failure_inputs = e.inputs
            if declared is None or not declared.applies(subject.calls):
                raise
            deviated = True
            tally.deviations += 1
            tally.seen.update(declared.seen(subject.calls))
            tally.concerns |= declared.seen_concerns(subject.calls)
            tally.deviation_message = tally.deviation_message or str(e)
        finally:
            # an example inside the declared deviation's domain (its trigger matches, or it showed
            # the deviation) is not a conforming comparison, even where its error happened to stay
            # under the bound (jax's uniform average over a hidden key came to 0.97 of it): its
            # ratios would count as a passing test's margin, and steer the search towards it
            # (an untriggered deviation covers every example: there the others' ratios steer the
            # search for it)
            covered = deviated or bool(
                declared and declared.when is not None and declared.applies(subject.calls)
            )
            ratios = [] if covered else [c.ratio for c in subject.comparisons]
            tally.ratios.extend(ratios)
            if not covered:
                tally.errors += [(c.max_error, c.bound.allowed) for c in subject.comparisons]
            tally.warnings.update(set(subject.warnings))
        if ratios:  # steer generation towards the inputs that come closest to the bound
            hypothesis_target(min(max(ratios), _SCORE_CAP), label="observed / allowed")

    return example


def _run(
    example: Callable[..., None],
    config: settings,
    digest: str,
    reproduce: str | None,
    seed: int | None,
) -> None:
    test = config(given(data=st.data())(example))
    # Hypothesis derives a derandomized run's examples and its database key from the test function;
    # every target shares this one, so add the target's id, as the pytest plugin adds a parametrised
    # id.
    test.hypothesis.inner_test._hypothesis_internal_add_digest = digest.encode()  # type: ignore[attr-defined]
    if seed is not None:  # --hypothesis-seed: one seed for the run, its own stream for every target
        test = hypothesis_seed(
            int.from_bytes(hashlib.sha256(f"{seed}:{digest}".encode()).digest()[:8], "little")
        )(test)
    elif config.derandomize:
        # A derandomized run's examples come from the target's id alone. Hypothesis would seed them
        # from a hash of this function's source too, so an edit of the runner re-drew every CI
        # example and flipped checks that passed by luck (beam_search, attentional_hidden).
        test = hypothesis_seed(
            int.from_bytes(hashlib.sha256(f"derandomized:{digest}".encode()).digest()[:8], "little")
        )(test)
    if reproduce:
        version, _, blob = reproduce.partition(":")
        test = reproduce_failure(version, blob.encode())(test)
    test()


def run(
    target_id: str,
    make_subject: Callable[[], Subject],
    body: Body,
    *,
    declared: Deviation | None,
    base: settings,
    max_examples: int,
    reproduce: str | None = None,
    tally: Tally | None = None,
    seed: int | None = None,
) -> Tally:
    """Run ``body`` over Hypothesis examples; return the tally, or raise Outcome or the failure.

    ``declared`` is the adapter's declared deviation for this target. One without a trigger covers
    the whole target, and the verdict is the deviation's (seen, or not seen after a targeted
    search). One with a trigger covers only the examples it names: any other example's failure is a
    failure, and the target passes with the count of examples that showed the deviation in its
    tally.
    """
    tally = Tally() if tally is None else tally  # the caller's, to read even when the run raises
    config = settings(
        base,
        max_examples=max_examples,
        report_multiple_bugs=False,
        suppress_health_check=[
            HealthCheck.filter_too_much,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
        deadline=None,
        phases=[p for p in base.phases if p != Phase.shrink]
        if declared and declared.when is None
        else base.phases,
    )
    example = _example(tally, make_subject, body, declared)
    try:
        _run(example, config, target_id, reproduce, seed)
    except (Unsatisfiable, _NoneExpressible):
        pass  # no example could be expressed: judged below
    if tally.supported < min(MIN_SUPPORTED, max_examples):
        raise Outcome("unsupported", f"unsupported: {tally.unsupported_text()}")
    if declared is None or declared.when is not None:
        return tally
    if not tally.deviations and not reproduce:  # a dedicated search before "conforms" is claimed
        searched = settings(
            config,
            max_examples=CONFIRM_FACTOR * max_examples,
            phases=[Phase.generate, Phase.target],
        )
        try:
            _run(example, searched, target_id + "#confirm", None, seed)
        except Unsatisfiable:
            pass
    seen = f"seen in {tally.deviations} of {tally.supported} examples" if tally.deviations else ""
    if seen:
        raise Outcome("deviation", f"declared deviation {seen}: {declared}")
    raise Outcome(
        "deviation not seen",
        f"declared deviation not seen in {tally.supported} examples, a targeted search included: "
        f"{declared} "
        "(the declaration may be stale)",
    )


_BLOB = re.compile(r"@reproduce_failure\('([^']+)', (b'[^']*')\)")


def reproduction(error: BaseException) -> str | None:
    """'version:blob' from Hypothesis' note on a failure, for --reproduce."""
    for note in getattr(error, "__notes__", []):
        found = _BLOB.search(note)
        if found:
            return f"{found.group(1)}:{ast.literal_eval(found.group(2)).decode()}"
    return None
