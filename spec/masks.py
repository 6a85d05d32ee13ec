"""Spec entries: causal_mask(T, S, alignment) and key_padding_mask(lengths, S).

causal_mask -> (T, S) bool, True where query t may see key s:
    "top_left"     s <= t            (torch is_causal, jax is_causal)
    "bottom_right" s <= t + S - T    (flash-attention >= 2.1, ONNX; the last query sees every key)
key_padding_mask -> (B, 1, 1, S) bool, True where s < lengths[b].
Outputs are exact: compared for equality, no tolerance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import EXACT, DType

lengths_1_to_9 = st.integers(1, 9)

CAUSAL_ARGS = (
    Arg(
        "T",
        "int >= 1, the number of queries",
        kind="int",
        regions=(
            region("T = 1", lambda v, i: v == 1),
            region("T < S", lambda v, i: v < i["S"]),
            region("T > S", lambda v, i: v > i["S"]),
        ),
    ),
    Arg(
        "S",
        "int >= 1, the number of keys",
        kind="int",
        regions=(region("S = 1", lambda v, i: v == 1), region("T = S", lambda v, i: v == i["T"])),
    ),
    Arg(
        "alignment",
        "'top_left' (s <= t) or 'bottom_right' (s <= t + S - T)",
        kind="choice",
        default="top_left",
        choices=("top_left", "bottom_right"),
        regions=(
            region("top_left", lambda v, i: v == "top_left"),
            region("bottom_right", lambda v, i: v == "bottom_right"),
        ),
    ),
)
PADDING_ARGS = (
    Arg(
        "lengths",
        "int array (B,), each in [0, S]: 0 masks every key of that item",
        kind="int",
        perturb=lambda v, i: np.maximum(v - 1, 0) if (v > 0).any() else None,  # one key fewer
        regions=(
            region("a length of 0", lambda v, i: bool((v == 0).any())),
            region("a length of S", lambda v, i: bool((v == i["S"]).any())),
            region("a length strictly between", lambda v, i: bool(((v > 0) & (v < i["S"])).any())),
            region("B = 1", lambda v, i: v.shape == (1,)),
        ),
    ),
    Arg("S", "int >= 1", kind="int", regions=(region("S = 1", lambda v, i: v == 1),)),
)


def _draw_causal(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """T and S from 1 to 9, the variant's alignment."""
    T, S = data.draw(lengths_1_to_9, label="T"), data.draw(lengths_1_to_9, label="S")
    return {"T": T, "S": S, "alignment": variant}


def _draw_padding(
    data: st.DataObject, dtype: DType = EXACT, variant: None = None
) -> dict[str, Any]:
    """S from 1 to 9 and one to four lengths in [0, S]."""
    S = data.draw(lengths_1_to_9, label="S")
    lengths = data.draw(st.lists(st.integers(0, S), min_size=1, max_size=4), label="lengths")
    return {"lengths": np.array(lengths, dtype=np.int64), "S": S}


def causal_rows_are_growing_prefixes(
    subject: Subject, data: st.DataObject, variant: str | None
) -> None:
    """Each row allows a prefix of the keys, one key longer than the row before (capped at 0 and S);
    top-left's row 0 sees key 0, bottom-right's last row sees every key."""
    inputs = _draw_causal(data, subject.dtype, variant)
    got = subject.case(inputs).got
    T, S = inputs["T"], inputs["S"]
    counts = got.sum(-1)
    offset = 1 if variant == "top_left" else S - T + 1
    want = np.clip(np.arange(T) + offset, 0, S)
    prefix = got == (np.arange(S)[None, :] < counts[:, None])
    if not prefix.all() or not (counts == want).all():
        subject.fail(
            inputs,
            f"rows allow {counts.tolist()} keys (prefixes: {bool(prefix.all())}); expected "
            f"prefixes of {want.tolist()}",
        )


def padding_counts_lengths(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Item b allows exactly its first lengths[b] keys."""
    inputs = _draw_padding(data)
    got = subject.case(inputs).got
    counts = got.reshape(got.shape[0], -1).sum(-1)
    if (
        not (counts == inputs["lengths"]).all()
        or not got[..., 0].any() == (inputs["lengths"] > 0).any()
    ):
        subject.fail(
            inputs,
            f"allowed keys per item {counts.tolist()}; expected lengths "
            f"{inputs['lengths'].tolist()}",
        )


def _bad_causal(change: dict[str, Any]) -> Any:
    return lambda data, dtype: {**_draw_causal(data, dtype, "top_left"), **change}


def _bad_padding(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    inputs = _draw_padding(data, dtype)
    return {**inputs, "lengths": inputs["lengths"] + inputs["S"] + 1}


CAUSAL_MASK = Component(
    name="causal_mask",
    family="masks",
    shapes="-> (T, S) bool",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    args=CAUSAL_ARGS,
    draw=_draw_causal,
    variants=("top_left", "bottom_right"),
    bad_inputs=(
        BadInput(
            "unknown_alignment",
            "alignment='bottom-right' (a typo)",
            _bad_causal({"alignment": "bottom-right"}),
        ),
        BadInput("empty_length", "T = 0", _bad_causal({"T": 0})),
        BadInput("no_keys", "S = 0", _bad_causal({"S": 0})),
    ),
)
prop(
    CAUSAL_MASK,
    variants=("top_left", "bottom_right"),
    dtypes=(EXACT,),
    name="rows_are_growing_prefixes",
)(causal_rows_are_growing_prefixes)

KEY_PADDING_MASK = Component(
    name="key_padding_mask",
    family="masks",
    shapes="lengths (B,) int -> (B, 1, 1, S) bool",
    error_scale=lambda inputs: 0.0,
    dtypes=(EXACT,),
    args=PADDING_ARGS,
    draw=_draw_padding,
    bad_inputs=(
        BadInput("length_beyond_S", "lengths[b] > S", _bad_padding),
        BadInput(
            "negative_length",
            "lengths[b] = -1",
            lambda data, dtype: {**_draw_padding(data), "lengths": np.array([-1])},
        ),
    ),
)
prop(KEY_PADDING_MASK, dtypes=(EXACT,), name="counts_lengths")(padding_counts_lengths)
