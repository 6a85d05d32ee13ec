"""Spec entry: rms_norm (family "layers"; its own file because spec/layers.py is full).

    rms_norm(x (..., D), gamma (D,), eps=1e-6) -> x / sqrt(mean(x^2) + eps) gamma   (..., D)
        Zhang & Sennrich 2019, as T5 and LLaMA use it: no centring, no shift; eps inside the
        square root (torch's F.rms_norm, flax's nn.RMSNorm). eps >= 0; with eps = 0 a row of zeros
        is refused: its normalisation is 0/0.
error_scale: max |x| / sqrt(mean(x^2) + eps) times max |gamma|, the output's own magnitude: the mean
square is rounded relatively, and so is each quotient.

This file is the worked example of the README's "Adding a component": the reference function
(reference/layers.py), this record, and a method on each adapter that has the operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import strategies as st

from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, region
from spec.dtypes import DType
from spec.layers import _GAMMA, _both_signs, _ln_inputs, _tiny, compare_moment

RMS_DEFAULT_EPS = 1e-6
# eps: the default (twice as likely), torch LayerNorm's 1e-5, 0, and large ones that dominate the
# mean square
RMS_EPS = (RMS_DEFAULT_EPS, RMS_DEFAULT_EPS, 1e-5, 0.0, 0.1, 10.0)


def _ms(i: Mapping[str, Any]) -> np.ndarray:
    """The per-row mean square of x, in float64."""
    x = i["x"].astype(np.float64)
    return (x * x).mean(-1)


def _zero_row(i: Mapping[str, Any]) -> bool:
    return bool((i["x"].astype(np.float64) == 0).all(-1).any())


def _draw_for(gradient: bool = False) -> Any:
    def draw(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
        """x of rank 1 to 4 (a row of zeros, constant rows, tiny and large values), gamma with zero,
        negative and large entries (ones under "unit_scale"), eps over its domain."""
        inputs = _ln_inputs(
            data, dtype, "unit_affine" if variant == "unit_scale" else None, gradient
        )
        x = inputs["x"].copy()
        if x.ndim > 1 and data.draw(st.booleans(), label="zero_row"):
            x[..., -1, :] = 0  # the last position's row: RMSNorm's only 0/0 point at eps = 0
        eps = data.draw(st.sampled_from(RMS_EPS), label="eps")
        # eps = 0 needs every row's mean square to be nonzero in the test dtype: a row of zeros, or
        # |x| ~ 1e-4 in float16 where the squares underflow, is 0/0 (outside the domain)
        if eps == 0 and not dtype.holds_normally(_ms({"x": x}).min()):
            eps = RMS_DEFAULT_EPS
        return {"x": x, "gamma": inputs["gamma"], "eps": eps}

    return draw


def _scale(inputs: Mapping[str, Any]) -> float:
    x = inputs["x"].astype(np.float64)
    rms = np.sqrt(_ms(inputs) + inputs["eps"])[..., None]  # (..., 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        amplified = np.where(rms > 0, np.abs(x) / np.where(rms > 0, rms, 1), 0)
    return float(amplified.max()) * float(np.abs(inputs["gamma"].astype(np.float64)).max())


def _bad(change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(_draw_for()(data, dtype, None))

    return draw


def _zero_row_eps_zero(i: dict[str, Any]) -> dict[str, Any]:
    """eps = 0 with the first position's row of x (all of a 1-D x) zeros."""
    x = i["x"].copy()
    if x.ndim == 1:
        x[:] = 0
    else:
        x[..., 0, :] = 0
    return {**i, "x": x, "eps": 0.0}


RMS_NORM = Component(
    name="rms_norm",
    family="layers",
    shapes="x (..., D), gamma (D,) -> (..., D)",
    error_scale=_scale,
    args=(
        Arg(
            "x",
            "float array (..., D) of any rank >= 1, every axis >= 1; finite; normalised over "
            "its last axis by its root mean square",
            regions=(
                region("1-D (D,)", lambda v, i: v.ndim == 1),
                region("3-D (B, T, D)", lambda v, i: v.ndim == 3),
                region("4-D", lambda v, i: v.ndim == 4),
                region(
                    "D = 1 (the output is gamma x / sqrt(x^2 + eps))", lambda v, i: v.shape[-1] == 1
                ),
                region("a row of zeros (the output row is 0)", lambda v, i: _zero_row(i)),
                region(
                    "large magnitudes of both signs (|x| >= 100)", lambda v, i: _both_signs(v, 100)
                ),
                region("tiny values (|x| < 1e-2)", lambda v, i: _tiny(v)),
            ),
        ),
        _GAMMA,
        Arg(
            "eps",
            "finite real >= 0, added to the mean square inside the square root; eps = 0 needs no "
            "row of zeros (refused: 0/0)",
            kind="number",
            default=RMS_DEFAULT_EPS,
            regions=(
                region("the default 1e-6", lambda v, i: v == RMS_DEFAULT_EPS),
                region("0", lambda v, i: v == 0),
                region("LayerNorm's 1e-5 (a non-default)", lambda v, i: v == 1e-5),
                region("larger than the mean square (0.1, 10)", lambda v, i: v >= 0.1),
                region("eps > 0 on a row of zeros", lambda v, i: v > 0 and _zero_row(i)),
            ),
        ),
    ),
    draw=_draw_for(),
    variants=(None,),
    gradient=Gradient(wrt=paths("x", "gamma"), draw=_draw_for(gradient=True)),
    bad_inputs=(
        BadInput(
            "gamma_shape_mismatch",
            "gamma (D + 1,)",
            _bad(lambda i: {**i, "gamma": np.concatenate([i["gamma"], i["gamma"][:1]])}),
        ),
        BadInput("negative_eps", "eps = -1e-6", _bad(lambda i: {**i, "eps": -1e-6})),
        BadInput("nan_eps", "eps = NaN", _bad(lambda i: {**i, "eps": float("nan")})),
        BadInput(
            "eps_zero_on_a_zero_row", "eps = 0 with a row of zeros (0/0)", _bad(_zero_row_eps_zero)
        ),
        BadInput(
            "empty_model_dim",
            "D = 0 (the mean of no features)",
            _bad(lambda i: {**i, "x": i["x"][..., :0], "gamma": i["gamma"][:0]}),
        ),
    ),
)


@prop(RMS_NORM)
def unit_mean_square(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """With gamma = 1, every position's mean square is ms / (ms + eps) (1 when eps is 0)."""
    inputs = subject.draw(data, "unit_scale")
    case = subject.case(inputs)
    y = case.got.astype(np.float64)
    ms = _ms(inputs)[..., None]  # (..., 1)
    D = y.shape[-1]
    subject.check(
        compare_moment(
            (y * y).mean(-1, keepdims=True),
            ms / (ms + inputs["eps"]),
            case,
            2 * D,
            "per-position mean square vs ms/(ms+eps)",
        ),
        inputs,
    )
