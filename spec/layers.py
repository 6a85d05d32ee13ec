"""Spec entries: position_wise_ffn, layer_norm, add_and_norm, dropout.

    position_wise_ffn(x (..., D), params, activation="relu") -> act(x W1 + b1) W2 + b2   (..., D)
        params: w1 (D, F), b1 (F,), w2 (F, D), b2 (D,); activation "relu" (the paper), "gelu"
        (exact, x Phi(x)) or "gelu_tanh" (the tanh approximation; flax's nn.gelu default).
    layer_norm(x (..., D), gamma (D,), beta (D,), eps=1e-5)
        -> (x - mean) / sqrt(var + eps) gamma + beta
        biased variance, eps inside the square root (torch's nn.LayerNorm; flax agrees). eps >= 0;
        with eps = 0 a constant row (zero variance) is refused: its normalisation is 0/0.
    add_and_norm(x, sublayer_out, gamma, beta, eps=1e-5) -> layer_norm(x + sublayer_out)  (post-LN)
    dropout(x, p, training=False, seed=0) -> x in evaluation; kept w.p. 1 - p and scaled by
        1/(1 - p) in training (inverted dropout); p = 0 keeps everything, p = 1 drops everything.
        Values in training mode are the library's own random draw, so only properties are checked
        there: the statistics, and that a seed names one mask (the same seed twice gives the same
        output).
error_scale: FFN the largest sum |x_d W1_df| + ... through both layers; LayerNorm D max|x| / min std
max|gamma| + max|beta| (the mean is rounded at u |x| and the division by the std amplifies it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import reference
from spec.core import BadInput, Component, Gradient, Subject, paths, prop
from spec.domains import Arg, equals, region
from spec.dtypes import DType, oracle_dtype
from spec.gradients import GRAD_ULPS
from spec.strategies import arrays, normal_params, seeds
from spec.tolerance import cast_floats

# (x's shape, F): the 3-D buckets (one position; F = 4 D, the paper's ratio), a 1-D x with odd D
# and a bottleneck F < D, D = 1, and a 4-D x with F = D (w1 and w2 of one shape, b1 and b2 too)
FFN_SHAPES = (
    ((1, 1, 4), 8),
    ((2, 5, 8), 32),
    ((1, 9, 16), 64),
    ((7,), 3),
    ((3, 1), 2),
    ((2, 1, 3, 5), 5),
)
FFN_LARGE = 1e3  # "large" inputs reach |x| = 1e3: both layers stay finite in float16


def _ffn_inputs(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
    """Kwargs for position_wise_ffn: x of any rank, F below, at or above D, biases zero or not."""
    shape, F = data.draw(st.sampled_from(FFN_SHAPES), label="shape")
    D = shape[-1]
    bias = (
        0.1
        if data.draw(st.sampled_from(["normal", "normal", "zero"]), label="biases") == "normal"
        else 0.0
    )
    shapes = {"w1": (D, F), "b1": (F,), "w2": (F, D), "b2": (D,)}
    params = data.draw(normal_params(shapes, dtype, {"b1": bias, "b2": bias}), label="params")
    return {
        "x": data.draw(arrays(shape, dtype, large=FFN_LARGE), label="x"),
        "params": params,
        "activation": variant or "relu",
    }


def _ffn_scale(inputs: Mapping[str, Any]) -> float:
    p = {k: np.abs(v.astype(np.float64)) for k, v in inputs["params"].items()}
    h = np.abs(inputs["x"].astype(np.float64)) @ p["w1"] + p["b1"]  # (..., F): bound on |x W1 + b1|
    return float((h @ p["w2"] + p["b2"]).max())


def _ffn_bad(change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(_ffn_inputs(data, dtype, None))

    return draw


def _ffn_param(name: str, new: Any) -> Any:
    return _ffn_bad(lambda i: {**i, "params": {**i["params"], name: new(i["params"][name])}})


def _both_signs(v: np.ndarray, at: float) -> bool:
    """Entries of magnitude >= at of both signs."""
    v = v.astype(np.float64)
    return v.size > 0 and v.max() >= at and v.min() <= -at


def _tiny(v: np.ndarray) -> bool:
    return v.size > 0 and float(np.abs(v.astype(np.float64)).max()) < 1e-2


def _f(inputs: Any) -> int:
    return inputs["params"]["w1"].shape[1]


_FFN_PARAMS = (
    Arg("w1", "float array (D, F), F >= 1, acting on the right (h = x W1 + b1)"),
    Arg("b1", "float array (F,); zero allowed"),
    Arg("w2", "float array (F, D)"),
    Arg("b2", "float array (D,); zero allowed"),
)
FFN_ARGS = (
    Arg(
        "x",
        "float array (..., D) of any rank >= 1 (a 1-D x is one position), D >= 1; finite values",
        regions=(
            region("1-D (D,): one position", lambda v, i: v.ndim == 1),
            region("2-D", lambda v, i: v.ndim == 2),
            region("3-D (B, T, D)", lambda v, i: v.ndim == 3),
            region("4-D", lambda v, i: v.ndim == 4),
            region("D = 1", lambda v, i: v.shape[-1] == 1),
            region("odd D > 1", lambda v, i: v.shape[-1] % 2 == 1 and v.shape[-1] > 1),
            region("large magnitudes of both signs (|x| >= 100)", lambda v, i: _both_signs(v, 100)),
            region("tiny values (|x| < 1e-2)", lambda v, i: _tiny(v)),
        ),
    ),
    Arg(
        "params",
        "dict w1 (D, F), b1 (F,), w2 (F, D), b2 (D,), F >= 1 any width "
        "(below, equal to or above D)",
        kind="params",
        entries=_FFN_PARAMS,
        regions=(
            region("F < D (a bottleneck)", lambda v, i: _f(i) < i["x"].shape[-1]),
            region("F = D", lambda v, i: _f(i) == i["x"].shape[-1]),
            region("F = 4 D (the paper's ratio)", lambda v, i: _f(i) == 4 * i["x"].shape[-1]),
            region(
                "zero biases",
                lambda v, i: not v["b1"].astype(float).any() and not v["b2"].astype(float).any(),
            ),
            region("nonzero biases", lambda v, i: bool(v["b1"].astype(float).any())),
        ),
    ),
    Arg(
        "activation",
        "'relu' (the paper), 'gelu' (exact, x Phi(x)) or 'gelu_tanh' (the tanh approximation)",
        kind="choice",
        default="relu",
        choices=("relu", "gelu", "gelu_tanh"),
        regions=tuple(region(a, equals(a)) for a in ("relu", "gelu", "gelu_tanh")),
    ),
)


def _relu_step(inputs: dict[str, Any], path: str, t: np.ndarray, u: float) -> float | None:
    """FFN with ReLU: a step that keeps every pre-activation x W1 + b1 on its side of 0. Inputs
    whose pre-activation is within rounding of 0 are rejected: there the adapter's branch is
    rounding too."""
    if inputs.get("activation") != "relu":
        return None
    x = inputs["x"].astype(np.float64)
    p = {k: v.astype(np.float64) for k, v in inputs["params"].items()}
    pre = x @ p["w1"] + p["b1"]  # (..., F)
    rounding = np.abs(x) @ np.abs(p["w1"]) + np.abs(p["b1"])  # the magnitude pre is rounded at
    assume(bool((np.abs(pre) > GRAD_ULPS * u * rounding).all()))
    moves = {
        "x": lambda: t @ p["w1"],
        "params.w1": lambda: x @ t,
        "params.b1": lambda: np.broadcast_to(t, pre.shape),
    }
    if path not in moves:
        return None  # w2, b2 act after the kink
    return 0.25 * float(np.abs(pre).min()) / max(float(np.abs(moves[path]()).max()), 1e-300)


POSITION_WISE_FFN = Component(
    name="position_wise_ffn",
    family="layers",
    shapes="x (..., D), W1 (D, F), b1 (F,), W2 (F, D), b2 (D,) -> (..., D)",
    error_scale=_ffn_scale,
    args=FFN_ARGS,
    draw=_ffn_inputs,
    variants=("relu", "gelu", "gelu_tanh"),
    gradient=Gradient(
        wrt=paths("x", "params.w1", "params.b1", "params.w2", "params.b2"),
        variants=("relu", "gelu"),
        max_step=_relu_step,
    ),
    bad_inputs=(
        BadInput("w2_shape_mismatch", "W2 (F, D - 1)", _ffn_param("w2", lambda w: w[:, :-1])),
        BadInput(
            "w1_shape_mismatch",
            "W1 (D + 1, F)",
            _ffn_param("w1", lambda w: np.concatenate([w, w[:1]])),
        ),
        BadInput(
            "b1_shape_mismatch",
            "b1 (F + 1,)",
            _ffn_param("b1", lambda b: np.concatenate([b, b[:1]])),
        ),
        BadInput(
            "b2_shape_mismatch",
            "b2 (D + 1,)",
            _ffn_param("b2", lambda b: np.concatenate([b, b[:1]])),
        ),
        BadInput(
            "bias_of_one", "b1 (1,) with F > 1 (no broadcasting)", _ffn_param("b1", lambda b: b[:1])
        ),
        BadInput(
            "unknown_activation",
            "activation='swish'",
            _ffn_bad(lambda i: {**i, "activation": "swish"}),
        ),
        BadInput(
            "scalar_x",
            "x of shape ()",
            _ffn_bad(lambda i: {**i, "x": i["x"].reshape(-1)[0].reshape(())}),  # (...) -> ()
        ),
    ),
)


# Properties beside the differential one (the record's draw gives it): each registers itself.
@prop(POSITION_WISE_FFN, variants=("relu", "gelu_tanh"), name="acts_per_position")
def ffn_acts_per_position(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Applying the FFN to the whole input equals applying it to each position alone (a 1-D x), and
    permuting positions permutes the outputs."""
    inputs = subject.draw(data, variant)
    whole = subject.case(inputs)
    x = inputs["x"]
    D = x.shape[-1]
    positions = x.reshape(-1, D)  # (N, D): every position, whatever the leading axes
    out = whole.got.reshape(-1, D)  # (N, D)
    rng = np.random.default_rng(data.draw(seeds(), label="perm_seed"))
    perm = rng.permutation(positions.shape[0])
    shuffled = positions[perm].reshape(x.shape)  # (N, D) -> x's shape
    permuted = subject.case({**inputs, "x": shuffled})
    moved = out[perm].reshape(x.shape)  # (N, D) -> x's shape
    whole.assert_equivalent(moved, permuted, f"output after permuting positions by {perm.tolist()}")
    t = data.draw(st.integers(0, positions.shape[0] - 1), label="position")
    alone = subject.case({**inputs, "x": positions[t]})  # (D,)
    whole.assert_equivalent(
        out[t], alone, f"position {t} alone (x of shape ({D},)) vs in the input"
    )


# LayerNorm's shapes: the 3-D buckets, a 1-D x, D = 1 (every row constant: the output is beta),
# a 4-D x
LN_SHAPES = ((1, 1, 4), (2, 5, 8), (1, 9, 16), (6,), (3, 1), (2, 3, 2, 5))
# eps: the default (twice as likely), tiny, the paper's tensor2tensor 1e-6, 0, and large ones that
# dominate the variance
LN_EPS = (1e-5, 1e-5, 1e-6, 1e-3, 0.0, 0.1, 10.0)
LN_DEFAULT_EPS = 1e-5
# The gradient property leaves out D = 1 and a constant row that is x's only row: there the
# x-gradient (D = 1) or the gamma-gradient (every xhat 0) is exactly 0, and a correct float32
# backward (torch's, jax's) leaves a residue of u rstd |x| |dy| (1e-7 to 1e-6 at eps = 1e-5) that
# the gradient floor, scaled by the gradient's own magnitude (0 there), cannot see
# (spec/gradients.py).
GRADIENT_LN_SHAPES = tuple(s for s in LN_SHAPES if s[-1] > 1)


def _ln_large(dtype: DType) -> float:
    """The "large" magnitude of LayerNorm inputs: 1e4, but 100 in float16, where (x - mean)^2 must
    stay finite."""
    return 100.0 if dtype.name == "float16" else 1e4


def _row(a: np.ndarray, which: int) -> tuple[Any, ...]:
    """The index of one position's row of a (..., D) array: position ``which`` along the
    second-to-last axis, or the whole array if it is 1-D (one position)."""
    if a.ndim == 1:
        return (Ellipsis,)
    rows = slice(which, which + 1) if which >= 0 else slice(which, None)
    return (Ellipsis, rows, slice(None))


def _ln_inputs(
    data: st.DataObject, dtype: DType, variant: str | None, gradient: bool = False
) -> dict[str, Any]:
    """Kwargs for layer_norm and a sublayer_out: constant rows, zero gamma, big affines, any eps."""
    shape = data.draw(st.sampled_from(GRADIENT_LN_SHAPES if gradient else LN_SHAPES), label="shape")
    small = variant == "small_variance"
    x = data.draw(
        arrays(shape, dtype, allow_large=not small, large=_ln_large(dtype)), label="x"
    ).copy()
    if small:  # var ~ eps: where eps inside or outside the root differ most
        x = (x.astype(np.float64) * 3e-3 + 1.0).astype(dtype.np_dtype)
    one_row = int(np.prod(shape[:-1])) == 1
    rows = data.draw(
        st.sampled_from(
            ["varied"] if gradient and one_row else ["varied", "varied", "constant_row"]
        ),
        label="rows",
    )
    if rows == "constant_row":
        # the first position's row (all of a 1-D x) is one value: x's first entry, (...) -> (N,)
        x[_row(x, 0)] = x.reshape(-1)[0]
    D = shape[-1]
    if variant == "unit_affine":
        gamma, beta = np.ones(D, dtype.np_dtype), np.zeros(D, dtype.np_dtype)
    else:
        p = data.draw(
            normal_params({"gamma": (D,), "beta": (D,)}, dtype, {"gamma": 1.0, "beta": 1.0}),
            label="affine",
        )
        form = data.draw(
            st.sampled_from(["normal", "normal", "zero_gamma_entries", "large"]),
            label="affine_form",
        )
        if form == "zero_gamma_entries":  # a feature switched off
            p["gamma"] = np.where(np.arange(D) % 2 == 0, 0, p["gamma"]).astype(dtype.np_dtype)
        elif form == "large":
            p = {k: (v.astype(np.float64) * 100).astype(dtype.np_dtype) for k, v in p.items()}
        gamma, beta = p["gamma"], p["beta"]
    inputs = {
        "x": x,
        "gamma": gamma,
        "beta": beta,
        "eps": data.draw(st.sampled_from(LN_EPS), label="eps"),
    }
    sub = data.draw(st.sampled_from(["zeros", "drawn", "drawn", "cancels"]), label="sublayer_out")
    if sub != "zeros" and not small:
        s = data.draw(arrays(x.shape, dtype, allow_large=False), label="sublayer_out_values").copy()
        if sub == "cancels":  # x + sublayer_out = 0 in the last position's row
            s[_row(s, -1)] = -x[_row(x, -1)]
        inputs["sublayer_out"] = s
    return inputs


def _refused(component: str, inputs: dict[str, Any], dtype: DType) -> bool:
    """Whether the reference refuses these inputs in the test dtype, float64 or the oracle's
    precision (eps = 0 on a row of x + sublayer_out that is constant once rounded there)."""
    fn = getattr(reference, component)
    for precision in (dtype.np_dtype, np.dtype(np.float64), oracle_dtype(dtype)):
        try:
            with np.errstate(all="ignore"):
                fn(**cast_floats(dict(inputs), precision))
        except ValueError:
            return True
    return False


def _ln_draw_for(component: str, gradient: bool = False) -> Any:
    def draw(data: st.DataObject, dtype: DType, variant: str | None) -> dict[str, Any]:
        """Kwargs for the component: layer_norm's inputs, with a sublayer_out for add_and_norm."""
        inputs = _ln_inputs(data, dtype, variant, gradient)
        if component == "layer_norm":
            inputs.pop("sublayer_out", None)
        elif "sublayer_out" not in inputs:
            inputs["sublayer_out"] = np.zeros_like(inputs["x"])
        inputs = {
            k: inputs[k] for k in ("x", "sublayer_out", "gamma", "beta", "eps") if k in inputs
        }
        # 0/0 on a constant row: outside the domain; so is a row whose variance underflows in the
        # test dtype (|x| ~ 1e-4 in float16: the squares are below its smallest normal, the
        # variance rounds to 0 and x / 0 is inf; a seed sweep found it)
        if inputs["eps"] == 0 and (
            _refused(component, inputs, dtype) or not dtype.holds_normally(_var(inputs).min())
        ):
            inputs["eps"] = LN_DEFAULT_EPS
        return inputs

    return draw


def _ln_scale(inputs: Mapping[str, Any]) -> float:
    """D max|x| / min std * max|gamma| + max|beta|: the mean is rounded at u |x|, whatever the
    algorithm, and dividing by the std amplifies that by |x| / std (found by the 20-seed sweep:
    torch at mean 1, std 3e-3 is off by 2e-5 in float32, a bound from the centred spread allowed
    1.3e-5)."""
    x = inputs["x"].astype(np.float64) + inputs.get("sublayer_out", np.zeros(1)).astype(np.float64)
    D = x.shape[-1]
    amplification = np.abs(x).max() / np.sqrt(x.var(-1).min() + inputs["eps"])
    gamma = float(np.abs(inputs["gamma"].astype(np.float64)).max())
    return D * float(amplification) * gamma + float(np.abs(inputs["beta"].astype(np.float64)).max())


def compare_moment(got: np.ndarray, want: np.ndarray, case: Any, terms: int, what: str) -> Any:
    from spec.tolerance import compare

    # a mean (or variance) of D outputs each within the bound moves by at most `terms` bounds
    return compare(got, want, case.bound.times(terms), what)


def _ln_bad(component: str, change: Any) -> Any:
    def draw(data: st.DataObject, dtype: DType) -> dict[str, Any]:
        return change(_ln_draw_for(component)(data, dtype, None))

    return draw


def _grow(a: np.ndarray) -> np.ndarray:
    return np.concatenate([a, a[:1]])


def _constant_row_eps_zero(inputs: dict[str, Any]) -> dict[str, Any]:
    """eps = 0 with the first row of x (and of x + sublayer_out) constant."""
    x = inputs["x"].copy()
    x[_row(x, 0)] = 1
    out = {**inputs, "x": x, "eps": 0.0}
    if "sublayer_out" in inputs:
        s = inputs["sublayer_out"].copy()
        s[_row(s, 0)] = 1
        out["sublayer_out"] = s
    return out


def _empty_model_dim(inputs: dict[str, Any]) -> dict[str, Any]:
    out = {
        **inputs,
        "x": inputs["x"][..., :0],
        "gamma": inputs["gamma"][:0],
        "beta": inputs["beta"][:0],
    }
    return (
        {**out, "sublayer_out": inputs["sublayer_out"][..., :0]}
        if "sublayer_out" in inputs
        else out
    )


def _ln_bad_inputs(component: str) -> tuple[BadInput, ...]:
    return (
        BadInput(
            "gamma_shape_mismatch",
            "gamma (D + 1,)",
            _ln_bad(component, lambda i: {**i, "gamma": _grow(i["gamma"])}),
        ),
        BadInput(
            "beta_shape_mismatch",
            "beta (D + 1,)",
            _ln_bad(component, lambda i: {**i, "beta": _grow(i["beta"])}),
        ),
        BadInput("negative_eps", "eps = -1e-5", _ln_bad(component, lambda i: {**i, "eps": -1e-5})),
        BadInput("nan_eps", "eps = NaN", _ln_bad(component, lambda i: {**i, "eps": float("nan")})),
        BadInput(
            "eps_zero_on_a_constant_row",
            "eps = 0 with a constant row (0/0)",
            _ln_bad(component, _constant_row_eps_zero),
        ),
        BadInput(
            "empty_model_dim",
            "D = 0 (the mean of no features)",
            _ln_bad(component, _empty_model_dim),
        ),
    )


def _sum(i: Any) -> np.ndarray:
    """What is normalised (x, or x + sublayer_out), in float64."""
    return i["x"].astype(np.float64) + (
        i["sublayer_out"].astype(np.float64) if i.get("sublayer_out") is not None else 0
    )


def _var(i: Any) -> np.ndarray:
    """The per-row variance of what is normalised, in float64."""
    return _sum(i).var(-1)


def _mean_dominates(i: Any) -> bool:
    """Every row's |mean| is over 100 standard deviations: where E[x^2] - E[x]^2 cancels."""
    return bool((np.abs(_sum(i).mean(-1)) > 100 * np.sqrt(_var(i))).all())


def _x_arg(what: str) -> Arg:
    return Arg(
        "x",
        f"float array (..., D) of any rank >= 1, every axis >= 1; finite values; {what}",
        regions=(
            region("1-D (D,)", lambda v, i: v.ndim == 1),
            region("3-D (B, T, D)", lambda v, i: v.ndim == 3),
            region("4-D", lambda v, i: v.ndim == 4),
            region("D = 1 (the output is beta)", lambda v, i: v.shape[-1] == 1),
            region(
                "a constant row with D > 1 (zero variance)",
                lambda v, i: v.shape[-1] > 1 and bool((_var(i) == 0).any()),
            ),
            region("|mean| >> std (mean 1, std 3e-3)", lambda v, i: _mean_dominates(i)),
            region("large magnitudes of both signs (|x| >= 100)", lambda v, i: _both_signs(v, 100)),
            region("tiny values (|x| < 1e-2)", lambda v, i: _tiny(v)),
        ),
    )


_GAMMA = Arg(
    "gamma",
    "float array (D,), any finite values: zero and negative entries allowed",
    regions=(
        region("ones (the usual init)", lambda v, i: bool((v == 1).all())),
        region("zero entries", lambda v, i: bool((v == 0).any())),
        region("negative entries", lambda v, i: bool((v < 0).any())),
        region("large (|gamma| >= 100)", lambda v, i: float(np.abs(v.astype(float)).max()) >= 100),
    ),
)
_BETA = Arg(
    "beta",
    "float array (D,), any finite values",
    regions=(
        region("zeros (the usual init)", lambda v, i: not v.astype(float).any()),
        region("negative entries", lambda v, i: bool((v < 0).any())),
        region("large (|beta| >= 100)", lambda v, i: float(np.abs(v.astype(float)).max()) >= 100),
    ),
)
_EPS = Arg(
    "eps",
    "finite real >= 0, added to the variance inside the square root; eps = 0 needs every row to "
    "vary (a constant row is refused: 0/0)",
    kind="number",
    default=LN_DEFAULT_EPS,
    regions=(
        region("the default 1e-5", lambda v, i: v == LN_DEFAULT_EPS),
        region("0", lambda v, i: v == 0),
        region("tiny (1e-6)", lambda v, i: 0 < v <= 1e-6),
        region(
            "comparable to the variance (eps ~ var, mean 1, std 3e-3)",
            lambda v, i: v > 0 and bool(((_var(i) > v / 10) & (_var(i) < 10 * v)).any()),
        ),
        region("larger than the variance (0.1, 10)", lambda v, i: v >= 0.1),
        region(
            "eps > 0 on a constant row (the output is beta)",
            lambda v, i: v > 0 and bool((_var(i) == 0).any()),
        ),
    ),
)

LAYER_NORM = Component(
    name="layer_norm",
    family="layers",
    shapes="x (..., D), gamma (D,), beta (D,) -> (..., D)",
    error_scale=_ln_scale,
    args=(_x_arg("normalised over its last axis"), _GAMMA, _BETA, _EPS),
    draw=_ln_draw_for("layer_norm"),
    variants=(None, "small_variance"),
    gradient=Gradient(
        wrt=paths("x", "gamma", "beta"), draw=_ln_draw_for("layer_norm", gradient=True)
    ),
    bad_inputs=_ln_bad_inputs("layer_norm"),
)

ADD_AND_NORM = Component(
    name="add_and_norm",
    family="layers",
    shapes="x (..., D), sublayer_out like x, gamma (D,), beta (D,) -> (..., D)",
    error_scale=_ln_scale,
    args=(
        _x_arg("x + sublayer_out is normalised over its last axis"),
        Arg(
            "sublayer_out",
            "float array of x's shape (no broadcasting); finite values",
            invisible={
                "swapped with x": "x + sublayer_out = sublayer_out + x: addition commutes, "
                "bit for bit"
            },
            regions=(
                region("zeros (the residual alone)", lambda v, i: not v.astype(float).any()),
                region("nonzero", lambda v, i: bool(v.astype(float).any())),
                region(
                    "cancelling x in a row (x + sublayer_out = 0)",
                    lambda v, i: bool(
                        (
                            (i["x"].astype(float) + v.astype(float) == 0).all(-1)
                            & v.astype(float).any(-1)
                        ).any()
                    ),
                ),
            ),
        ),
        _GAMMA,
        _BETA,
        _EPS,
    ),
    draw=_ln_draw_for("add_and_norm"),
    variants=(None, "small_variance"),
    bad_inputs=(
        BadInput(
            "sublayer_shape_mismatch",
            "sublayer_out one longer on its first axis",
            _ln_bad(
                "add_and_norm",
                lambda i: {
                    **i,
                    "sublayer_out": np.concatenate([i["sublayer_out"], i["sublayer_out"][:1]]),
                },
            ),
        ),
        *_ln_bad_inputs("add_and_norm"),
    ),
)


# LayerNorm's and Add & Norm's property beside the differential one: the record's draw, not its
# name, says whether a sublayer output is added.
@prop(LAYER_NORM, ADD_AND_NORM)
def normalised_moments(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """With gamma = 1 and beta = 0, every position has mean 0 and variance var / (var + eps)."""
    inputs = subject.draw(data, "unit_affine")
    case = subject.case(inputs)
    y = case.got.astype(np.float64)
    x = inputs["x"].astype(np.float64) + inputs.get("sublayer_out", np.zeros(1)).astype(np.float64)
    var = x.var(-1, keepdims=True)
    D = y.shape[-1]
    subject.check(
        compare_moment(
            y.mean(-1, keepdims=True), np.zeros_like(var), case, D, "per-position mean vs 0"
        ),
        inputs,
    )
    subject.check(
        compare_moment(
            y.var(-1, keepdims=True),
            var / (var + inputs["eps"]),
            case,
            2 * D,
            "per-position variance vs var/(var+eps)",
        ),
        inputs,
    )


# Dropout's statistical test: the kept count of n entries is Binomial(n, 1 - p); it must lie within
# Z standard deviations of n (1 - p). Z = 5.3 gives a two-sided false-alarm rate of 1.2e-7 per
# example, about 1e-6 per run of the `ci` profile (10 examples x 4 dtypes x adapters): not flaky.
# At p = 0 and p = 1 the count is exact (no slack).
DROPOUT_Z = 5.3
DROPOUT_SHAPES = ((4, 32, 32), (4096,))  # n = 4096 entries, 3-D and 1-D
EVAL_SHAPES = DROPOUT_SHAPES + ((), (2, 3, 1, 5))  # out of training also 0-D and 4-D
DROPOUT_P = (0.1, 0.5, 0.9, 0.0, 1.0, 0.3)
OPEN_P = tuple(p for p in DROPOUT_P if 0 < p < 1)


def dropout_seeds() -> st.SearchStrategy[int]:
    """Return a strategy for a dropout seed over its domain [-2^63, 2^63): 0, negative, beyond 32
    bits, any."""
    return st.one_of(st.sampled_from([0, -7, 2**40 + 3, 2**63 - 1]), seeds())


def _dropout_inputs(
    data: st.DataObject, dtype: DType, variant: str | None, ps: tuple[float, ...] = DROPOUT_P
) -> dict[str, Any]:
    """Kwargs for dropout: x of both signs, no zeros (a 0 output means dropped), p over [0, 1]."""
    training = variant == "training"
    shape = data.draw(st.sampled_from(DROPOUT_SHAPES if training else EVAL_SHAPES), label="shape")
    x = data.draw(arrays(shape, dtype, large=FFN_LARGE), label="x").astype(np.float64)
    # no zeros, signs kept; np.asarray: a 0-D x stays an array
    x = np.asarray(np.where(x < 0, -1, 1) * (np.abs(x) + 0.5)).astype(dtype.np_dtype)
    p = data.draw(st.sampled_from(ps), label="p")
    return {"x": x, "p": p, "training": training, "seed": data.draw(dropout_seeds(), label="seed")}


def _dropout_bad(p: float) -> Any:
    return lambda data, dtype: {**_dropout_inputs(data, dtype, "training"), "p": p}


def _big(v: np.ndarray) -> bool:
    return v.size > 0 and float(np.abs(v.astype(float)).max()) >= 100


DROPOUT_ARGS = (
    Arg(
        "x",
        "float array of any shape (0-D included); finite values",
        regions=(
            region("0-D", lambda v, i: v.ndim == 0),
            region("1-D", lambda v, i: v.ndim == 1),
            region("4-D", lambda v, i: v.ndim == 4),
            region("negative entries", lambda v, i: bool((v < 0).any())),
            region("large magnitudes (|x| >= 100)", lambda v, i: _big(v)),
        ),
    ),
    Arg(
        "p",
        "real in [0, 1], the probability of dropping an entry: 0 keeps every entry, 1 drops every "
        "entry (zeros), in training; out of training any p is the identity",
        kind="number",
        perturb=lambda v, i: 1e-3 if v == 0 else min(v * (1 + 1e-3), 1 - 1e-3),  # stays in [0, 1]
        regions=(
            region("0", lambda v, i: v == 0),
            region("1", lambda v, i: v == 1),
            region("non-dyadic (0.1, 0.3)", lambda v, i: v in (0.1, 0.3)),
            region("0.5", lambda v, i: v == 0.5),
            region("high (0.9)", lambda v, i: v == 0.9),
            region("p = 1 in training", lambda v, i: v == 1 and i["training"]),
            region("p = 0 in training", lambda v, i: v == 0 and i["training"]),
        ),
    ),
    Arg(
        "training",
        "bool: False (evaluation) is the identity",
        kind="flag",
        default=False,
        regions=(region("True", lambda v, i: v is True), region("False", lambda v, i: v is False)),
    ),
    Arg(
        "seed",
        "int in [-2^63, 2^63): names the random stream of the mask; the spec fixes no stream (the "
        "draw is the library's own)",
        kind="int",
        default=0,
        perturb=lambda v, i: (v + 1 + 2**63) % 2**64 - 2**63,  # 2^63 - 1 wraps to -2^63
        invisible={
            "perturbed": "the spec fixes no stream: seed + 1 names another mask as valid as the "
            "first, and every property (statistics, one seed one mask, another seed another mask) "
            "holds for any one-to-one map of seeds",
        },
        regions=(
            region("0 (the default)", lambda v, i: v == 0),
            region("positive, 32 bits", lambda v, i: 0 < v < 2**32),
            region("beyond 32 bits", lambda v, i: v >= 2**32),
            region("negative", lambda v, i: v < 0),
        ),
    ),
)

DROPOUT = Component(
    name="dropout",
    family="layers",
    shapes="x (...) -> like x",
    error_scale=lambda inputs: 0.0,
    args=DROPOUT_ARGS,
    bad_inputs=(
        BadInput("p_above_one", "p = 1.5", _dropout_bad(1.5)),
        BadInput("negative_p", "p = -0.1", _dropout_bad(-0.1)),
        BadInput("nan_p", "p = NaN", _dropout_bad(float("nan"))),
    ),
)


# Dropout has no differential property (training draws are the library's own): its properties,
# each registered by itself, in the order they are reported.
@prop(DROPOUT, name="eval_is_identity")
def dropout_eval_is_identity(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """Out of training, dropout returns its input bit for bit, whatever p and seed."""
    inputs = _dropout_inputs(data, subject.dtype, "eval")
    got = subject.case(inputs).got
    if not np.array_equal(got.astype(np.float64), inputs["x"].astype(np.float64)):
        subject.fail(inputs, "dropout in evaluation mode changed its input")


@prop(DROPOUT, name="training_statistics")
def dropout_statistics(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """In training, the kept fraction is 1 - p within a binomial bound (false alarms 1.2e-7 per
    example), kept values are x / (1 - p) (within two roundings), dropped values are exactly 0."""
    inputs = _dropout_inputs(data, subject.dtype, "training")
    got = subject.case(inputs).got.astype(np.float64)
    x, p = inputs["x"].astype(np.float64), inputs["p"]
    kept = got != 0
    n = kept.size
    slack = DROPOUT_Z * np.sqrt(n * p * (1 - p))
    if abs(kept.sum() - n * (1 - p)) > slack:
        subject.fail(
            inputs,
            f"kept {kept.sum()} of {n} at p={p}; expected {n * (1 - p):.0f} +- {slack:.0f} "
            f"(z = {DROPOUT_Z})",
        )
    if not kept.any():
        return
    rel = np.abs(got[kept] - x[kept] / (1 - p)) / np.abs(x[kept] / (1 - p))
    four_u = 4 * subject.dtype.unit_roundoff
    if rel.max() > four_u:
        subject.fail(
            inputs,
            f"kept values are off x/(1-p) by a relative {rel.max():.3g} (> 4 u = {four_u:.3g})",
        )


@prop(DROPOUT, name="seed_names_the_mask")
def dropout_seed_names_the_mask(subject: Subject, data: st.DataObject, variant: str | None) -> None:
    """In training with 0 < p < 1, the same seed twice gives the same output bit for bit, and
    another seed another mask (two equal masks of 4096 entries have probability below 2^-400)."""
    inputs = _dropout_inputs(data, subject.dtype, "training", OPEN_P)
    first, again = subject.case(inputs).got, subject.case(inputs).got
    if not np.array_equal(first, again):
        subject.fail(
            inputs,
            f"seed {inputs['seed']} gave two different outputs; expected the same output twice",
        )
    other = data.draw(dropout_seeds().filter(lambda s: s != inputs["seed"]), label="other_seed")
    second = subject.case({**inputs, "seed": other}).got
    if np.array_equal(first != 0, second != 0):
        subject.fail(
            inputs,
            f"seeds {inputs['seed']} and {other} gave the same mask; expected different masks",
        )
