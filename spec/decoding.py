"""Spec entries: greedy_decode(logprobs, bos, eos, max_len) and beam_search(logprobs, bos, eos, max_len,
beam_width, alpha=0.0), over a Markov next-token table (reference/decoding.py states the algorithm).

Length penalty (named): GNMT, lp(Y) = ((5 + |Y|) / 6)^alpha, score = log P(Y) / lp(Y).
Properties: beam width 1 equals greedy; hypotheses come out ordered by score; a beam wide enough to be
exhaustive (beam_width >= V^max_len) finds a best score >= greedy's and >= every sequence's.
NOTE: "the best beam never scores below greedy" is false for standard beam search at small widths
(greedy's prefix can be pruned by candidates whose continuations are all poor), so it is specified
only where it is a theorem. Outputs are exact token ids: compared for equality.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.decoding import greedy_decode, sequence_score
from spec.core import BadInput, Component, Property, Subject, matches_reference
from spec.dtypes import EXACT, DType
from spec.strategies import seeds

BOS, EOS = 0, 1


def _table(data: st.DataObject, V: int) -> np.ndarray:
    """A random normalised log-prob table (V, V): no ties (continuous draws)."""
    logits = np.random.default_rng(data.draw(seeds(), label="table_seed")).standard_normal((V, V)) * 2
    return logits - np.log(np.exp(logits).sum(-1, keepdims=True))


def _inputs(data: st.DataObject, dtype: DType, variant: str | None, beam: bool, exhaustive: bool = False) -> dict[str, Any]:
    V = data.draw(st.sampled_from([3, 4, 6] if not exhaustive else [3, 4]), label="V")
    max_len = data.draw(st.integers(1, 5 if not exhaustive else 3), label="max_len")
    inputs: dict[str, Any] = {"logprobs": _table(data, V), "bos": BOS, "eos": EOS, "max_len": max_len}
    if beam:
        inputs["beam_width"] = V**max_len if exhaustive else data.draw(st.integers(1, 4), label="beam_width")
        inputs["alpha"] = 0.6 if variant == "length_penalty" else 0.0
    return inputs


def _scores(beams: np.ndarray, inputs: dict[str, Any]) -> list[float]:
    return [
        sequence_score(row[row >= 0], inputs["logprobs"], inputs["bos"], inputs["alpha"]) for row in beams if (row >= 0).any()
    ]


def width_one_is_greedy(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Beam search with beam_width 1 returns the greedy sequence."""
    inputs = {**_inputs(data, subject.dtype, variant, beam=True), "beam_width": 1}
    got = subject.case(inputs).got[0]
    greedy = greedy_decode(inputs["logprobs"], BOS, EOS, inputs["max_len"])
    if not np.array_equal(got[got >= 0], greedy):
        subject.fail(inputs, f"width-1 beam {got.tolist()} differs from greedy {greedy.tolist()}")


def ordered_by_score(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Hypotheses come out best first: scores (with the length penalty) never increase down the list."""
    inputs = _inputs(data, subject.dtype, variant, beam=True)
    scores = _scores(subject.case(inputs).got, inputs)
    if any(a < b - 1e-12 for a, b in zip(scores, scores[1:], strict=False)):
        subject.fail(inputs, f"hypothesis scores are not in descending order: {scores}")


def exhaustive_beam_is_optimal(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """With beam_width >= V^max_len the best hypothesis scores >= greedy's and >= every sequence's."""
    inputs = _inputs(data, subject.dtype, variant, beam=True, exhaustive=True)
    best = _scores(subject.case(inputs).got, inputs)[0]
    V, L = inputs["logprobs"].shape[0], inputs["max_len"]
    # complete hypotheses: ending at their first EOS, or running to max_len without one
    candidates = [
        np.array(seq)
        for n in range(1, L + 1)
        for seq in itertools.product(range(V), repeat=n)
        if (seq[-1] == EOS and EOS not in seq[:-1]) or (n == L and EOS not in seq)
    ]
    optimum = max(sequence_score(c, inputs["logprobs"], BOS, inputs["alpha"]) for c in candidates)
    greedy = sequence_score(greedy_decode(inputs["logprobs"], BOS, EOS, L), inputs["logprobs"], BOS, inputs["alpha"])
    if best < optimum - 1e-9 or best < greedy - 1e-9:
        subject.fail(inputs, f"best beam score {best:.6g} < optimum {optimum:.6g} or greedy {greedy:.6g}")


GREEDY_DECODE = Component(
    name="greedy_decode",
    family="decoding",
    signature="greedy_decode(logprobs, bos, eos, max_len) -> tokens",
    shapes="logprobs (V, V) -> (L,) int, L <= max_len",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    properties=(matches_reference(lambda data, dtype, variant: _inputs(data, dtype, variant, beam=False), (None,), (EXACT,)),),
    bad_inputs=(
        BadInput("eos_out_of_range", "eos = V", lambda data, dtype: {**_inputs(data, dtype, None, beam=False), "eos": 99}),
    ),
)

BEAM_SEARCH = Component(
    name="beam_search",
    family="decoding",
    signature="beam_search(logprobs, bos, eos, max_len, beam_width, alpha=0.0) -> hypotheses",
    shapes="logprobs (V, V) -> (beam_width, max_len) int, -1 padded, best first",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    properties=(
        matches_reference(
            lambda data, dtype, variant: _inputs(data, dtype, variant, beam=True), ("no_penalty", "length_penalty"), (EXACT,)
        ),
        Property("width_one_is_greedy", width_one_is_greedy.__doc__, width_one_is_greedy, ("no_penalty",), (EXACT,)),
        Property("ordered_by_score", ordered_by_score.__doc__, ordered_by_score, ("no_penalty", "length_penalty"), (EXACT,)),
        Property(
            "exhaustive_beam_is_optimal",
            exhaustive_beam_is_optimal.__doc__,
            exhaustive_beam_is_optimal,
            ("no_penalty", "length_penalty"),
            (EXACT,),
        ),
    ),
    bad_inputs=(
        BadInput(
            "zero_beam_width", "beam_width = 0", lambda data, dtype: {**_inputs(data, dtype, None, beam=True), "beam_width": 0}
        ),
    ),
)
