"""Spec entries: greedy_decode(logprobs, bos, eos, max_len) and beam_search(logprobs, bos, eos,
max_len, beam_width, alpha=0.0), over a Markov next-token table (reference/decoding.py states the
algorithm).

Length penalty (named): GNMT, lp(Y) = ((5 + |Y|) / 6)^alpha, score = log P(Y) / lp(Y).
Properties: beam width 1 equals greedy; hypotheses come out ordered by score; a beam wide enough to
be exhaustive (beam_width >= V^max_len) finds a best score >= greedy's and >= every sequence's.
NOTE: "the best beam never scores below greedy" is false for standard beam search at small widths
(greedy's prefix can be pruned by candidates whose continuations are all poor), so it is specified
only where it is a theorem. Outputs are exact token ids: compared for equality.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.decoding import greedy_decode, sequence_score
from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import EXACT, DType
from spec.strategies import seeds

BOS, EOS = 0, 1
TABLE_KINDS = ("normal", "normal", "ties", "neg_inf", "unnormalised")
ALPHAS = (0.6, 0.6, 1.0, 2.0, -0.5)  # GNMT's 0.6 (twice as likely), 1, a large one, a negative one


@dataclass(frozen=True)
class Decoding:
    """A decoding variant: the next-token table's kind (``table``, one of TABLE_KINDS; None draws
    it) and, for beam search, whether the length penalty's alpha is drawn (``penalty``; else
    alpha = 0). The "ties" table also draws V, max_len, eos and beam widths where hypotheses of
    different lengths tie. Its str is the test id's ("ties", "neg_inf", "no_penalty",
    "length_penalty")."""

    table: str | None = None
    penalty: bool = False

    def __str__(self) -> str:
        parts = ([self.table] if self.table else []) + (["length_penalty"] if self.penalty else [])
        return "+".join(parts) or "no_penalty"

    @classmethod
    def parse(cls, text: Decoding | str | None) -> Decoding:
        """The variant a test id names (the strings of earlier versions and deviation keys); None
        draws the table and no penalty."""
        if isinstance(text, Decoding):
            return text
        tables = (None, *TABLE_KINDS)
        known = {str(v): v for v in (cls(t, p) for t in tables for p in (False, True))}
        if (text or "no_penalty") not in known:
            raise ValueError(f"unknown decoding variant {text!r}; expected one of {sorted(known)}")
        return known[text or "no_penalty"]


def _table(data: st.DataObject, V: int, kind: str) -> np.ndarray:
    """A next-token table (V, V): normalised log-probs without ties ("normal"), integer scores in
    {-2, -1, 0} with equal scores and equal sums across lengths ("ties"), log-probs with impossible
    (-inf) transitions, every row keeping a finite one ("neg_inf"), or positive unnormalised scores
    ("unnormalised")."""
    rng = np.random.default_rng(data.draw(seeds(), label="table_seed"))
    if kind == "ties":
        return rng.integers(-2, 1, (V, V)).astype(np.float64)
    if kind == "unnormalised":
        return rng.standard_normal((V, V)) * 2 + 3
    logits = rng.standard_normal((V, V)) * 2
    table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    if kind == "neg_inf":
        impossible = rng.random((V, V)) < 0.4
        impossible[np.arange(V), rng.integers(0, V, V)] = False  # one possible next token per row
        table = np.where(impossible, -np.inf, table)
    return table


def _inputs(
    data: st.DataObject,
    dtype: DType,
    variant: Decoding | str | None,
    beam: bool,
    exhaustive: bool = False,
    several: bool = False,
) -> dict[str, Any]:
    """A table, bos, eos and max_len (and, for beam search, beam_width and alpha) for a variant;
    ``several``: beams of 2 or more and max_len >= 2, so the output holds hypotheses of different
    lengths to order."""
    v = Decoding.parse(variant)
    # equal scores across lengths: V = 3, 4 with max_len >= 2 and eos = 1 tie most often
    ties = v.table == "ties"
    V = data.draw(
        st.sampled_from([3, 4] if ties else [3, 4, 6, 2, 1] if not exhaustive else [3, 4, 2, 1]),
        label="V",
    )
    max_len = data.draw(
        st.integers(2 if ties or several else 1, 5 if not exhaustive else 3), label="max_len"
    )
    if v.table is None:
        kind = data.draw(st.sampled_from(TABLE_KINDS), label="table")
    else:
        kind = v.table
    bos = data.draw(st.sampled_from([BOS, BOS, V - 1, 2 % V]), label="bos")
    eos = EOS if ties else data.draw(st.sampled_from([EOS % V, EOS % V, bos, V - 1]), label="eos")
    inputs: dict[str, Any] = {
        "logprobs": _table(data, V, kind),
        "bos": bos,
        "eos": eos,
        "max_len": max_len,
    }
    if beam:
        # "ties": beams wide enough to hold hypotheses of equal score and different lengths
        widths = [3, 4, 8] if ties else [2, 3, 4, 8] if several else [1, 2, 3, 4, 8]
        inputs["beam_width"] = (
            V**max_len if exhaustive else data.draw(st.sampled_from(widths), label="beam_width")
        )
        inputs["alpha"] = data.draw(st.sampled_from(ALPHAS), label="alpha") if v.penalty else 0.0
    return inputs


def draw_greedy(
    data: st.DataObject, dtype: DType, variant: Decoding | str | None
) -> dict[str, Any]:
    """Kwargs for greedy_decode: a table of the variant's kind, bos, eos and max_len."""
    return _inputs(data, dtype, variant, beam=False)


def draw_beam(data: st.DataObject, dtype: DType, variant: Decoding | str | None) -> dict[str, Any]:
    """Kwargs for beam_search: greedy_decode's, a beam width and the variant's alpha."""
    return _inputs(data, dtype, variant, beam=True)


def _scores(beams: np.ndarray, inputs: dict[str, Any]) -> list[float]:
    return [
        sequence_score(row[row >= 0], inputs["logprobs"], inputs["bos"], inputs["alpha"])
        for row in beams
        if (row >= 0).any()
    ]


def _v(i: Any) -> int:
    return i["logprobs"].shape[0]


def _greedy(i: Any) -> np.ndarray:
    return greedy_decode(i["logprobs"], i["bos"], i["eos"], i["max_len"])


def _row_ties(v: np.ndarray) -> bool:
    """Two equal finite scores in some row."""
    rows = np.sort(np.where(np.isfinite(v), v, np.nan), -1)  # (V, V), -inf as NaN: never equal
    return bool((np.diff(rows, axis=-1) == 0).any())


def _hypotheses(i: Any) -> int:
    """How many hypotheses beam search returns (rows that are not all -1)."""
    from reference.decoding import beam_search

    return int((beam_search(**i) >= 0).any(-1).sum())


def _next_id(v: int, i: Any) -> int:
    return (v + 1) % _v(i)


# Arguments shared by greedy_decode and beam_search. A perturbed table prefers higher ids by 1e-3
# per id: in exact arithmetic it changes nothing but which of equal scores wins (ties go to the
# lowest id).
DECODE_ARGS = (
    Arg(
        "logprobs",
        "float array (V, V), V >= 1: logprobs[prev, next] scores the next token (log-probs, or "
        "any scores: rows need not be normalised); entries finite or -inf (an impossible "
        "transition), every row with a finite entry",
        perturb=lambda v, i: v + 1e-3 * np.arange(v.shape[1]),
        regions=(
            region("V = 1 (bos = eos = 0)", lambda v, i: v.shape[0] == 1),
            region("V = 2", lambda v, i: v.shape[0] == 2),
            region("V = 6", lambda v, i: v.shape[0] == 6),
            region("ties (equal scores in a row)", lambda v, i: _row_ties(v)),
            region("-inf entries", lambda v, i: bool(np.isneginf(v).any())),
            region("unnormalised (positive scores)", lambda v, i: bool((v > 0).any())),
        ),
    ),
    Arg(
        "bos",
        "int id in [0, V): the token before the first; may equal eos",
        kind="int",
        perturb=_next_id,
        regions=(
            region("0", lambda v, i: v == 0),
            region("V - 1 with V > 2", lambda v, i: v == _v(i) - 1 and _v(i) > 2),
            region("equal to eos with V > 1", lambda v, i: v == i["eos"] and _v(i) > 1),
            region("another (2)", lambda v, i: v == 2),
        ),
    ),
    Arg(
        "eos",
        "int id in [0, V): decoding stops after emitting it (kept in the output)",
        kind="int",
        perturb=_next_id,
        regions=(
            region("1", lambda v, i: v == 1),
            region("V - 1 with V > 2", lambda v, i: v == _v(i) - 1 and _v(i) > 2),
            region("emitted first (greedy stops after one token)", lambda v, i: _greedy(i)[0] == v),
            region(
                "never emitted by greedy within max_len > 1",
                lambda v, i: i["max_len"] > 1 and v not in _greedy(i),
            ),
        ),
    ),
    Arg(
        "max_len",
        "int >= 1: the most tokens a hypothesis holds (EOS included)",
        kind="int",
        regions=(
            region("1", lambda v, i: v == 1),
            region(
                "reached (greedy has max_len > 1 tokens, no EOS)",
                lambda v, i: v > 1 and i["eos"] not in _greedy(i),
            ),
            region("not reached (greedy stops at EOS earlier)", lambda v, i: len(_greedy(i)) < v),
        ),
    ),
)
BEAM_ARGS = DECODE_ARGS + (
    Arg(
        "beam_width",
        "int >= 1: the number of candidates kept per step, and of rows returned (-1 padded)",
        kind="int",
        regions=(
            region("1 (greedy)", lambda v, i: v == 1),
            region("1 < beam_width <= V", lambda v, i: 1 < v <= _v(i)),
            region("beam_width > V", lambda v, i: v > _v(i)),
            region("more rows than hypotheses (rows of -1)", lambda v, i: _hypotheses(i) < v),
            region(
                "exhaustive (>= V^max_len) with V > 1",
                lambda v, i: _v(i) > 1 and v >= _v(i) ** i["max_len"],
            ),
        ),
    ),
    Arg(
        "alpha",
        "any finite real: the GNMT length penalty's exponent, 0 for none; positive favours longer "
        "hypotheses",
        kind="number",
        default=0.0,
        regions=(
            region("0", lambda v, i: v == 0),
            region("0.6 (GNMT)", lambda v, i: v == 0.6),
            region("1", lambda v, i: v == 1),
            region("large (2)", lambda v, i: v >= 2),
            region("negative", lambda v, i: v < 0),
        ),
    ),
)


def _decode_bad(beam: bool, change: dict[str, Any] | Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        inputs = _inputs(data, dtype, Decoding(penalty=True), beam=beam)
        return change(inputs) if callable(change) else {**inputs, **change}

    return draw


def _entry(value: float, row: bool = False) -> Any:
    """logprobs with its first entry (or its whole first row) set to value."""

    def change(i: dict[str, Any]) -> dict[str, Any]:
        table = i["logprobs"].copy()
        table[0, slice(None) if row else slice(0, 1)] = value
        return {**i, "logprobs": table}

    return change


def _decode_bad_inputs(beam: bool) -> tuple[BadInput, ...]:
    return (
        BadInput("eos_out_of_range", "eos = V", _decode_bad(beam, lambda i: {**i, "eos": _v(i)})),
        BadInput("bos_out_of_range", "bos = V", _decode_bad(beam, lambda i: {**i, "bos": _v(i)})),
        BadInput("negative_bos", "bos = -1", _decode_bad(beam, {"bos": -1})),
        BadInput("zero_max_len", "max_len = 0", _decode_bad(beam, {"max_len": 0})),
        BadInput(
            "table_not_square",
            "logprobs (V, V + 1)",
            _decode_bad(
                beam,
                lambda i: {
                    **i,
                    "logprobs": np.concatenate([i["logprobs"], i["logprobs"][:, :1]], 1),
                },
            ),
        ),
        BadInput("nan_logprob", "a NaN entry", _decode_bad(beam, _entry(float("nan")))),
        BadInput(
            "row_all_neg_inf",
            "a row of only -inf (no next token possible)",
            _decode_bad(beam, _entry(-np.inf, row=True)),
        ),
    )


# None: the table's kind is drawn
GREEDY_VARIANTS = (None, Decoding("ties"), Decoding("neg_inf"), Decoding("unnormalised"))
# "ties": integer scores without a length penalty, where hypotheses of different lengths tie exactly
# and the lowest ids decide (any alpha != 0 would break those ties: how a perturbed alpha is seen)
BEAM_VARIANTS = (Decoding(), Decoding(penalty=True), Decoding("ties"))

GREEDY_DECODE = Component(
    name="greedy_decode",
    family="decoding",
    shapes="logprobs (V, V) -> (L,) int, L <= max_len",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    args=DECODE_ARGS,
    draw=draw_greedy,
    variants=GREEDY_VARIANTS,
    bad_inputs=_decode_bad_inputs(beam=False),
)

BEAM_SEARCH = Component(
    name="beam_search",
    family="decoding",
    shapes="logprobs (V, V) -> (beam_width, max_len) int, -1 padded, best first",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    args=BEAM_ARGS,
    draw=draw_beam,
    variants=BEAM_VARIANTS,
    bad_inputs=_decode_bad_inputs(beam=True)
    + (
        BadInput("zero_beam_width", "beam_width = 0", _decode_bad(True, {"beam_width": 0})),
        BadInput("nan_alpha", "alpha = NaN", _decode_bad(True, {"alpha": float("nan")})),
    ),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(
    GREEDY_DECODE,
    variants=(None, Decoding("ties")),
    dtypes=(EXACT,),
    name="tokens_are_the_best_next",
)
def greedy_tokens_are_the_best_next(
    subject: Subject, data: st.DataObject, variant: Decoding | None
) -> None:
    """Every token is the highest-scoring next token after the one before (the lowest id among
    equal scores), only the last may be EOS, and the output is max_len long unless it ends with
    EOS."""
    inputs = subject.draw(data, variant)
    got, table, eos = subject.case(inputs).got, inputs["logprobs"], inputs["eos"]
    prev = np.concatenate([[inputs["bos"]], got[:-1]]).astype(int)  # (L,)
    best = np.argmax(table[prev], axis=-1)  # (L,): the first maximum, the lowest id
    if not np.array_equal(got, best):
        subject.fail(
            inputs, f"tokens {got.tolist()}; the best next tokens after each are {best.tolist()}"
        )
    if eos in got[:-1] or (len(got) < inputs["max_len"] and got[-1] != eos):
        subject.fail(
            inputs,
            f"tokens {got.tolist()} go on past EOS={eos} or stop before "
            f"max_len={inputs['max_len']} without it",
        )


@prop(BEAM_SEARCH, variants=(Decoding(),), dtypes=(EXACT,))
def width_one_is_greedy(subject: Subject, data: st.DataObject, variant: Decoding) -> None:
    """Beam search with beam_width 1 returns the greedy sequence."""
    inputs = {**subject.draw(data, variant), "beam_width": 1}
    got = subject.case(inputs).got[0]
    greedy = greedy_decode(inputs["logprobs"], inputs["bos"], inputs["eos"], inputs["max_len"])
    if not np.array_equal(got[got >= 0], greedy):
        subject.fail(inputs, f"width-1 beam {got.tolist()} differs from greedy {greedy.tolist()}")


@prop(BEAM_SEARCH, variants=BEAM_VARIANTS, dtypes=(EXACT,))
def ordered_by_score(subject: Subject, data: st.DataObject, variant: Decoding) -> None:
    """Hypotheses come out best first: scores (with the length penalty) never increase down the
    list, and hypotheses of equal score come in increasing token order (the lowest ids first)."""
    # several hypotheses of different lengths: where a length penalty reorders them (width 1 or
    # max_len 1 holds nothing to order; the generic draw reached a reordering in ~4% of examples)
    inputs = _inputs(data, subject.dtype, variant, beam=True, several=True)
    got = subject.case(inputs).got
    scores = _scores(got, inputs)
    if any(a < b - 1e-12 for a, b in zip(scores, scores[1:], strict=False)):
        subject.fail(inputs, f"hypothesis scores are not in descending order: {scores}")
    rows = [tuple(row[row >= 0].tolist()) for row in got if (row >= 0).any()]
    for k in range(len(rows) - 1):
        # exactly equal: integer scores, or -inf
        if scores[k] == scores[k + 1] and rows[k] > rows[k + 1]:
            subject.fail(
                inputs,
                f"hypotheses {rows[k]} and {rows[k + 1]} score {scores[k]} both; expected the "
                "lower ids first",
            )


@prop(BEAM_SEARCH, variants=(Decoding(), Decoding(penalty=True)), dtypes=(EXACT,))
def exhaustive_beam_is_optimal(subject: Subject, data: st.DataObject, variant: Decoding) -> None:
    """With beam_width >= V^max_len the best hypothesis scores >= greedy's and >= every
    sequence's."""
    inputs = _inputs(data, subject.dtype, variant, beam=True, exhaustive=True)
    best = _scores(subject.case(inputs).got, inputs)[0]
    V, L, bos, eos = inputs["logprobs"].shape[0], inputs["max_len"], inputs["bos"], inputs["eos"]
    # complete hypotheses: ending at their first EOS, or running to max_len without one
    candidates = [
        np.array(seq)
        for n in range(1, L + 1)
        for seq in itertools.product(range(V), repeat=n)
        if (seq[-1] == eos and eos not in seq[:-1]) or (n == L and eos not in seq)
    ]
    optimum = max(sequence_score(c, inputs["logprobs"], bos, inputs["alpha"]) for c in candidates)
    greedy = sequence_score(
        greedy_decode(inputs["logprobs"], bos, eos, L), inputs["logprobs"], bos, inputs["alpha"]
    )
    if best < optimum - 1e-9 or best < greedy - 1e-9:
        subject.fail(
            inputs, f"best beam score {best:.6g} < optimum {optimum:.6g} or greedy {greedy:.6g}"
        )
