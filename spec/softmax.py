"""Spec entry: softmax(x, axis=-1).

Shapes: any floating array with at least one axis; an empty softmax axis gives an empty output.
Output: same shape and dtype. -inf entries are masked (weight exactly 0); a slice of only -inf
returns zeros (the suite's fully-masked convention). error_scale = 1: outputs lie in [0, 1] and a
shifted logit x - max(x) carries a rounding error that moves its weight by at most u/e.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.gradients import softmax_vjp
from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.gradients import GRAD_DTYPES, GRAD_ULPS, GradBound, call_vjp, cotangent
from spec.strategies import large_logit, make_values, seeds, value_kinds
from spec.tolerance import compare

SOFTMAX_SHAPES = ((1, 1), (3, 5), (2, 4, 16), (4, 1, 7), (2, 33), (6,), (2, 3, 1, 5))
EMPTY_SHAPE = (3, 0)  # a softmax over nothing is nothing: only the differential property draws it


@st.composite
def softmax_inputs(
    draw: Any,
    dtype: DType,
    kind: str | None = None,
    neg_inf: bool | None = None,
    empty: bool = False,
) -> dict[str, Any]:
    """Return a strategy for softmax kwargs: x from a named distribution, sometimes with -inf
    entries."""
    shape = draw(st.sampled_from(SOFTMAX_SHAPES + ((EMPTY_SHAPE,) if empty else ())), label="shape")
    axis = draw(st.sampled_from([-1] + list(range(-len(shape), len(shape)))), label="axis")
    kind = kind or draw(value_kinds(), label="kind")
    seed = draw(seeds(), label="seed")
    x = make_values(shape, kind, seed, dtype, large_logit(dtype))
    if (neg_inf if neg_inf is not None else draw(st.booleans(), label="neg_inf")) and x.size:
        rng = np.random.default_rng(seed + 1)
        hole = np.moveaxis(rng.random(shape) < 0.3, axis, -1)  # (..., N)
        keep = rng.integers(0, shape[axis], hole.shape[:-1])  # one finite entry per slice
        np.put_along_axis(hole, keep[..., None], False, axis=-1)
        x = np.where(np.moveaxis(hole, -1, axis), -np.inf, x).astype(dtype.np_dtype)
    return {"x": x, "axis": axis}


def draw_softmax(data: st.DataObject, dtype: DType, variant: None) -> dict[str, Any]:
    """x and axis over their whole domains, an empty softmax axis included."""
    return data.draw(softmax_inputs(dtype, empty=True), label="inputs")


def _bad_axis(data: st.DataObject, dtype: DType) -> dict[str, Any]:
    x = data.draw(softmax_inputs(dtype, neg_inf=False), label="inputs")["x"]
    return {"x": x, "axis": data.draw(st.sampled_from([x.ndim, -x.ndim - 1]), label="axis")}


def _slices(i: Any) -> np.ndarray:
    """x with the softmax axis last."""
    return np.moveaxis(i["x"].astype(np.float64), i["axis"], -1)


SOFTMAX_ARGS = (
    Arg(
        "x",
        "floating array of any shape with at least one axis; entries finite or -inf (masked); an "
        "empty softmax "
        "axis gives an empty output",
        regions=(
            region("1-D", lambda v, i: v.ndim == 1),
            region("4-D", lambda v, i: v.ndim == 4),
            region("size-1 softmax axis", lambda v, i: v.shape[i["axis"]] == 1),
            region("empty softmax axis", lambda v, i: v.shape[i["axis"]] == 0),
            region(
                "ties in a slice",
                lambda v, i: (
                    v.size > 0
                    and v.shape[i["axis"]] > 1
                    and bool((np.diff(np.sort(_slices(i), -1), axis=-1) == 0).any())
                ),
            ),
            region(
                "large logits (|x| >= 1e3)",
                lambda v, i: bool((np.abs(_slices(i)[np.isfinite(_slices(i))]) >= 1e3).any()),
            ),
            region(
                "tiny logits (|x| < 1e-2)",
                lambda v, i: v.size > 0 and bool((np.abs(_slices(i)) < 1e-2).all()),
            ),
            region("-inf entries", lambda v, i: bool(np.isneginf(_slices(i)).any())),
            region(
                "a slice of only -inf",
                lambda v, i: v.size > 0 and bool(np.isneginf(_slices(i)).all(-1).any()),
            ),
        ),
    ),
    Arg(
        "axis",
        "int in [-x.ndim, x.ndim)",
        kind="int",
        default=-1,
        perturb=lambda v, i: None if i["x"].ndim < 2 else (v + 1) % i["x"].ndim,
        regions=(
            region("-1", lambda v, i: v == -1),
            region("negative, not -1", lambda v, i: v < -1),
            region("0", lambda v, i: v == 0),
            region("the last axis as a positive index", lambda v, i: v == i["x"].ndim - 1),
        ),
    ),
)


SOFTMAX = Component(
    name="softmax",
    family="attention",
    shapes="x (...), y like x",
    error_scale=lambda inputs: 1.0,
    args=SOFTMAX_ARGS,
    draw=draw_softmax,
    gradient=Gradient(
        wrt=paths("x"),
        draw=lambda data, dtype, variant: data.draw(softmax_inputs(dtype), label="inputs"),
    ),
    bad_inputs=(BadInput("axis_out_of_range", "axis = x.ndim or -x.ndim - 1", _bad_axis),),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(SOFTMAX)
def in_unit_interval_and_sums_to_one(
    subject: Subject, data: st.DataObject, variant: str | None
) -> None:
    """Every output lies in [0, 1] and every slice along the axis sums to 1."""
    case = subject.case(data.draw(softmax_inputs(subject.dtype), label="inputs"))
    got, axis = case.got.astype(np.float64), case.inputs["axis"]
    if (got < 0).any() or (got > 1).any():
        subject.fail(
            case.inputs, f"outputs outside [0, 1]: min {got.min():.6g}, max {got.max():.6g}"
        )
    sums = got.sum(axis=axis, keepdims=True)
    # each output is within the bound of the truth, and the true sum is 1: n bounds for a sum of n
    subject.check(
        compare(
            sums, np.ones_like(sums), case.bound.times(got.shape[axis]), "sum along the axis vs 1"
        ),
        case.inputs,
    )


def _shift_exact_inputs(data: st.DataObject, dtype: DType) -> tuple[dict[str, Any], dict[str, Any]]:
    """x on a grid and an integer row shift c such that x + c is exact in dtype."""
    shape = data.draw(st.sampled_from(SOFTMAX_SHAPES), label="shape")
    rng = np.random.default_rng(data.draw(seeds(), label="seed"))
    p = dtype.significand_bits
    g = max(p // 3, 1)  # grid 2^-g; |x|, |c| < 2^(p-g-2) so that |x + c| needs at most p bits
    limit = 2.0 ** (p - g - 2)
    x = np.round(rng.uniform(-limit, limit, shape) * 2**g) / 2**g
    c = np.round(rng.uniform(-limit, limit, shape[:-1] + (1,)))  # one constant per row
    x = np.clip(x, -limit + 1, limit - 1)
    return {"x": x.astype(dtype.np_dtype), "axis": -1}, {
        "x": (x + c).astype(dtype.np_dtype),
        "axis": -1,
    }


@prop(SOFTMAX)
def shift_invariant(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """softmax(x + c) == softmax(x) for a constant c per row (x + c exact in the dtype)."""
    base, shifted = _shift_exact_inputs(data, subject.dtype)
    a, b = subject.case(base), subject.case(shifted)
    a.assert_equivalent(a.got, b, "softmax(x) vs softmax(x + c)")


@prop(SOFTMAX)
def finite_for_large_logits(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Logits of 1e4 (near the float16 range in float16) give finite outputs equal to the
    oracle's."""
    subject.case(
        data.draw(softmax_inputs(subject.dtype, kind="large"), label="inputs")
    ).assert_matches_oracle()


@prop(SOFTMAX)
def monotone(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Within a slice, x_i < x_j implies y_i <= y_j, and x_i == x_j implies y_i == y_j (within the
    bound)."""
    case = subject.case(
        data.draw(softmax_inputs(subject.dtype, kind="ties", neg_inf=False), label="inputs")
    )
    x = np.moveaxis(case.inputs["x"].astype(np.float64), case.inputs["axis"], -1)[
        ..., :, None
    ]  # (..., N, 1)
    y = np.moveaxis(case.got.astype(np.float64), case.inputs["axis"], -1)[
        ..., :, None
    ]  # (..., N, 1)
    dx, dy = x - np.swapaxes(x, -1, -2), y - np.swapaxes(y, -1, -2)  # (..., N, N): x_i - x_j
    tol = 2 * case.bound.allowed
    wrong = ((dx < 0) & (dy > tol)) | ((dx == 0) & (np.abs(dy) > tol))
    if wrong.any():
        i = tuple(int(t) for t in np.argwhere(wrong)[0])
        subject.fail(
            case.inputs,
            f"not monotone at {i}: x_i - x_j = {dx[i]:.6g} but y_i - y_j = {dy[i]:.6g} (allowed "
            f"{tol:.3g})",
        )


@prop(SOFTMAX)
def all_neg_inf_slice_is_zero(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """A slice of only -inf (every key masked) returns zeros, not NaN."""
    inputs = data.draw(softmax_inputs(subject.dtype, neg_inf=False), label="inputs")
    x, axis = inputs["x"].copy(), inputs["axis"]
    index: list[slice | int] = [slice(None)] * x.ndim
    index[(axis + 1) % x.ndim if x.ndim > 1 else 0] = 0
    x[tuple(index)] = -np.inf
    subject.case({"x": x, "axis": axis}).assert_matches_oracle("output with all -inf slices")


@prop(SOFTMAX, dtypes=GRAD_DTYPES, kind="gradient", name="gradient_rows_sum_to_zero")
def softmax_gradient_sums_to_zero(subject: Subject, data: st.DataObject, variant: None) -> None:
    """Softmax's Jacobian rows sum to zero: the input gradient sums to 0 along the softmax axis."""
    inputs = data.draw(softmax_inputs(subject.dtype), label="inputs")
    c = cotangent(data, inputs["x"].shape, subject.dtype)
    g = call_vjp(subject, inputs, c, ("x",))["x"].astype(np.float64)
    # dx_i = y_i (c_i - <c, y>): the sum rounds at the magnitude of its terms
    # (reference/gradients.py)
    magnitude = softmax_vjp(**inputs, cotangent=c)[1]["x"].sum(inputs["axis"])
    floor = GRAD_ULPS * subject.dtype.unit_roundoff * float(magnitude.max())
    sums = g.sum(inputs["axis"])
    bound = GradBound(floor, 0.0, floor, subject.dtype.name)
    subject.check(
        compare(
            sums, np.zeros_like(sums), bound, "sum of the input gradient along the softmax axis"
        ),
        inputs,
    )
