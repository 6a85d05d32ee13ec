"""The oracle for decoding: greedy and beam search over a next-token model given as a table.

The model is a Markov table ``logprobs`` (V, V): logprobs[prev, next] = log p(next | prev), rows
normalised. It stands in for a Transformer's last-position log-probs, so decoding is specified and
tested apart from any network (the network's step-by-step behaviour has its own properties).
"""

from __future__ import annotations

import numpy as np

from reference.checks import is_array
from reference.semantics import convention

# The components (the numpy adapter re-exports exactly these).
__all__ = ["beam_search", "greedy_decode"]


def _check(component: str, logprobs: np.ndarray, bos: int, eos: int, max_len: int) -> None:
    """logprobs a square table of scores, finite or -inf, every row with a finite entry; bos, eos
    ids in [0, V); max_len >= 1."""
    if (
        not is_array(logprobs)
        or logprobs.ndim != 2
        or logprobs.shape[0] != logprobs.shape[1]
        or logprobs.size == 0
    ):
        raise ValueError(
            f"{component}: logprobs must be a square table (V, V); got "
            f"{getattr(logprobs, 'shape', None)}"
        )
    table = logprobs.astype(np.float64)
    if np.isnan(table).any() or np.isposinf(table).any():
        raise ValueError(
            f"{component}: logprobs must be finite or -inf (an impossible transition); got NaN or "
            "+inf"
        )
    if not np.isfinite(table).any(-1).all():
        rows = np.flatnonzero(~np.isfinite(table).any(-1)).tolist()
        raise ValueError(
            f"{component}: every row of logprobs must have a finite entry; got rows {rows} all -inf"
        )
    V = logprobs.shape[0]
    ints = all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) for t in (bos, eos))
    if not (ints and 0 <= bos < V and 0 <= eos < V):
        raise ValueError(
            f"{component}: bos and eos must be ids in [0, V={V}); got bos={bos!r}, eos={eos!r}"
        )
    if not (isinstance(max_len, (int, np.integer)) and max_len >= 1):
        raise ValueError(f"{component}: max_len must be a positive int; got {max_len!r}")


def length_penalty(length: int, alpha: float) -> float:
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha  (Wu et al. 2016, eq. 14); |Y| counts
    EOS. Under the length_penalty=length profile (reference/semantics.py): |Y| ** alpha."""
    if convention("length_penalty") == "length":
        return float(length) ** alpha
    return ((5.0 + length) / 6.0) ** alpha


def sequence_score(tokens: np.ndarray, logprobs: np.ndarray, bos: int, alpha: float = 0.0) -> float:
    """score(Y) = sum_t log p(y_t | y_{t-1}) / lp(|Y|), with y_0 = BOS."""
    prev = np.concatenate([[bos], tokens[:-1]]).astype(int)
    return float(logprobs[prev, tokens.astype(int)].sum()) / length_penalty(len(tokens), alpha)


def greedy_decode(logprobs: np.ndarray, bos: int, eos: int, max_len: int) -> np.ndarray:
    """y_t = argmax_v log p(v | y_{t-1}) until EOS (kept) or max_len tokens; ties go to the lowest
    id."""
    _check("greedy_decode", logprobs, bos, eos, max_len)
    tokens: list[int] = []
    prev = bos
    while len(tokens) < max_len:
        prev = int(np.argmax(logprobs[prev]))
        tokens.append(prev)
        if prev == eos:
            break
    return np.array(tokens, dtype=np.int64)


def beam_search(
    logprobs: np.ndarray, bos: int, eos: int, max_len: int, beam_width: int, alpha: float = 0.0
) -> np.ndarray:
    """Beam search -> (beam_width, max_len) int64: hypotheses best first by score, padded with -1.

    Each step expands every live hypothesis by every token and keeps the beam_width candidates of
    highest cumulative log-probability (ties: lower token ids first); a kept candidate ending in EOS
    is finished, the rest stay live. After max_len steps live hypotheses finish as they are. The
    result ranks every finished hypothesis by score = log P(Y) / lp(|Y|) (GNMT length penalty,
    alpha = 0: none; the length_penalty and beam_eos profiles of reference/semantics.py name HF's
    alternatives). Standard beam search is NOT guaranteed to beat greedy: greedy's prefix can be
    pruned by candidates whose continuations are all poor. Only a beam wide enough to be exhaustive
    is (spec/decoding.py).
    """
    _check("beam_search", logprobs, bos, eos, max_len)
    if not (isinstance(beam_width, (int, np.integer)) and beam_width >= 1):
        raise ValueError(f"beam_search: beam_width must be a positive int; got {beam_width!r}")
    if isinstance(alpha, bool) or not (
        isinstance(alpha, (int, float, np.integer, np.floating)) and np.isfinite(alpha)
    ):
        raise ValueError(f"beam_search: alpha must be a finite number; got {alpha!r}")
    ranked = _search(logprobs, bos, eos, max_len, beam_width, alpha)
    out = np.full((beam_width, max_len), -1, dtype=np.int64)
    for row, seq in enumerate(ranked):
        out[row, : len(seq)] = seq
    return out


def _search(
    logprobs: np.ndarray,
    bos: int,
    eos: int,
    max_len: int,
    beam_width: int,
    alpha: float,
    lower_ids_first: bool = True,
) -> list[tuple[int, ...]]:
    """beam_search's hypotheses, best first. ``lower_ids_first=False`` breaks every tie the other
    way: where the two differ, a tie decided the result (the trigger of an adapter whose ties come
    in another order)."""

    def order(seq: tuple[int, ...]) -> tuple[int, ...]:
        return seq if lower_ids_first else tuple(-t for t in seq)

    live: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    finished: list[tuple[tuple[int, ...], float]] = []
    for _ in range(max_len):
        candidates = [
            (seq + (v,), lp + float(logprobs[seq[-1] if seq else bos, v]))
            for seq, lp in live
            for v in range(logprobs.shape[0])
        ]
        candidates.sort(key=lambda c: (-c[1], order(c[0])))
        live = []
        if convention("beam_eos") == "frees_a_beam":  # HF: a finished one leaves its beam free
            for rank, (seq, lp) in enumerate(candidates[: 2 * beam_width]):
                if seq[-1] == eos:
                    if rank < beam_width:
                        finished.append((seq, lp))
                elif len(live) < beam_width:
                    live.append((seq, lp))
        else:
            for seq, lp in candidates[:beam_width]:
                (finished if seq[-1] == eos else live).append((seq, lp))
        if not live:
            break
    finished += live
    score = lambda c: -c[1] / length_penalty(len(c[0]), alpha)
    return [seq for seq, _ in sorted(finished, key=lambda c: (score(c), order(c[0])))][:beam_width]
