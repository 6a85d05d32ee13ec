"""Gradient conformance: the adapter's vector-Jacobian products against finite differences of the
oracle.

Adapter interface (optional): ``vjp(component, inputs, cotangent, wrt) -> {path: gradient}``
returns, for each differentiable input named by a path in ``wrt`` ("q", "params.w_q"), the gradient
of <cotangent, component(**inputs)> with respect to it, same shape and dtype as the input. torch
uses autograd, jax ``jax.vjp``; an adapter without ``vjp`` is reported "unsupported".

Oracle (no hand-written backward): the float64 reference (x87 extended for float64 tests)
differentiated by central differences along a random direction t per input:
    D(e) = <c, f(x + e t) - f(x - e t)> / 2e,    e = u_o^(1/3) max(1, max|x|)
and the adapter passes iff |<G, t> - D(e)| <= allowed, with
    allowed = GRAD_MULTIPLIER |<G_same, t> - D(e)| + GRAD_ULPS u(d) scale
              + ORACLE_MULT (|D(e) - D(2e)| + 8 u_o error_scale ||c||_1 / e)
    scale   = (sum |c| |f(x + e t) - f(x - e t)| / 2e  +  sum |G| |t|) max(1, error_scale /
    max|f(x)|)
G_same is the analytic VJP evaluated in the test dtype, where the reference has one (softmax and
attention, reference/gradients.py): the forward policy's same-precision term, with flash-attention's
gradient multiplier. It is what captures the backward pass's own cancellations (dS = P (dP - D) at a
saturated softmax is a difference of equal numbers, amplified by |q| in dK). The second term is the
policy's floor for gradients (GRAD_ULPS is the gradient multiplier: a backward pass rounds at the
magnitude of the products it sums, amplified as the forward is); the second is the oracle's own
error (Richardson's truncation estimate plus the rounding of two evaluations divided by 2e). So
float64 gradients are checked to the oracle's resolution, ~1e-13 relative, not to float64's. Checked
at float64 and float32 only: finite differences in float16 say nothing. Properties beside the
differential check: masked keys and values get exactly zero gradient; under a causal mask, outputs
before t do not send gradient to inputs at or after t; softmax's Jacobian rows sum to zero (the
input gradient sums to 0 along the softmax axis).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from hypothesis import strategies as st

from reference import autodiff
from reference.autodiff import alias_paths, get_path, set_paths
from reference.gradients import VJPS
from spec.core import Property, Subject, Unsupported
from spec.dtypes import FLOAT32, FLOAT64
from spec.strategies import seeds
from spec.tolerance import Bound, cast_floats, compare

GRAD_ULPS = 32.0
# flash-attention's rule for gradients is 3x its own reference's error (shared/README.md); we
# compare other libraries' algorithms, so the forward policy's 4 (the analytic VJPs in
# reference/gradients.py).
GRAD_MULTIPLIER = 4.0
ORACLE_MULT = 4.0
# How far a framework's tanh and sigmoid may be from correctly rounded, in ulps of the test dtype,
# where their derivatives are computed from the output (1 - y^2, y (1 - y)): XLA's float32 tanh is
# up to 4.4 ulps off and its logistic 1.9 (measured over [-12, 12]), torch's within 1. At a
# saturated gate those ulps are percents of the derivative (reference/autodiff.py).
NONLINEARITY_ULPS = 4.0
GRAD_DTYPES = (FLOAT64, FLOAT32)


@dataclass(frozen=True)
class GradBound(Bound):
    """Bound for a directional derivative: same_precision_error holds the oracle's own error
    estimate, analytic_error the same-precision analytic VJP's error (0 where the reference has
    none)."""

    analytic_error: float = 0.0

    def explain(self) -> str:
        return (
            f"allowed {self.allowed:.3g} = {GRAD_MULTIPLIER:g} x same-precision VJP error "
            f"{self.analytic_error:.3g}"
            f" + floor {self.floor:.3g} ({GRAD_ULPS:g} u({self.dtype}) x scale)"
            f" + {ORACLE_MULT:g} x finite-difference error {self.same_precision_error:.3g}"
        )

    def times(self, factor: float) -> GradBound:
        return GradBound(
            self.allowed * factor,
            self.same_precision_error * factor,
            self.floor * factor,
            self.dtype,
            self.analytic_error * factor,
        )


def call_vjp(
    subject: Subject, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The adapter's gradients, checked for presence, shape, dtype and finiteness."""
    fn = getattr(subject.namespace, "vjp", None)
    if not callable(fn):
        raise Unsupported(f"adapter {subject.adapter_name} offers no vjp (gradients)")
    subject.calls.append(inputs)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        try:
            grads = fn(subject.component.name, inputs, cotangent, wrt)
        except Unsupported:
            raise
        except Exception as e:  # a crashing backward fails its own test
            subject.fail(inputs, f"vjp raised {type(e).__name__}: {e}")
    for path in wrt:
        g, x = grads.get(path) if isinstance(grads, Mapping) else None, get_path(inputs, path)
        if not isinstance(g, np.ndarray) or g.shape != x.shape or g.dtype != x.dtype:
            subject.fail(
                inputs,
                f"vjp for {path} returned {getattr(g, 'shape', g)} {getattr(g, 'dtype', '')}; "
                f"expected {x.shape} {x.dtype}",
            )
        if not np.isfinite(g.astype(np.float64)).all():
            subject.fail(inputs, f"vjp for {path} has non-finite entries")
    return grads


def _finite(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x[np.isfinite(x)]


# The oracle's precision for every gradient test: x87 extended (64-bit significand) where NumPy has
# it.
WIDE = np.dtype(np.longdouble)
U_WIDE = float(np.finfo(WIDE).eps) / 2


@dataclass(frozen=True)
class Directional:
    """The oracle's directional derivative along t and its own error estimate."""

    value: float  # D(e / 4)
    error: float  # max |D(h) - D(h / 2)| over e, e/2 (Richardson: truncation and kinks) + rounding
    jvp: np.ndarray  # (f(x + h t) - f(x - h t)) / 2h at the smallest h, for the magnitude


def directional_derivative(
    fn: Callable[..., Any],
    inputs: Mapping[str, Any],
    path: str,
    t: np.ndarray,
    c: np.ndarray,
    e: float,
    scale: float,
) -> Directional:
    """Central differences of fn along t at steps e, e/2, e/4, in extended precision, contracted
    with c. Every alias of path (alias_paths) moves with it."""
    paths = alias_paths(inputs, path)
    x = cast_floats(dict(inputs), WIDE)
    base = get_path(x, path)
    cw = c.astype(WIDE)

    def central(h: float) -> np.ndarray:
        with np.errstate(invalid="ignore", over="ignore"):
            plus, minus = (
                fn(**set_paths(x, paths, base + h * t)),
                fn(**set_paths(x, paths, base - h * t)),
            )
            return (np.asarray(plus, WIDE) - np.asarray(minus, WIDE)) / (2 * h)

    jvps = [central(e / 2**k) for k in range(3)]
    values = [float((cw * j).sum()) for j in jvps]
    rounding = 8 * U_WIDE * max(scale, 1.0) * float(np.abs(c.astype(np.float64)).sum()) / (e / 4)
    error = max(abs(values[0] - values[1]), abs(values[1] - values[2])) + rounding
    return Directional(values[2], error, jvps[2])


# (inputs, path, t, u(dtype)) -> the largest step that stays on one side of every kink, or None
MaxStep = Callable[[Mapping[str, Any], str, np.ndarray, float], "float | None"]


@dataclass(frozen=True)
class SamePrecision:
    """The same-precision gradient algorithms of one example, computed once for all its paths.

    ``gradients[k][path]`` is algorithm k's gradient in the test dtype: reverse-mode differentiation
    of the reference itself (reference/autodiff.py), for every component, in both forms of the
    saturating nonlinearities' derivatives (from the input, and from the output as torch and jax
    compute them: 0 once a gate's output rounds to 1; and in extended precision with the gate
    outputs NONLINEARITY_ULPS off, what a framework's own tanh costs), and the short analytic
    VJPs where the reference has them (reference/gradients.py: softmax, attention in both forms of
    D, MHA, additive attention). ``wide[path]`` is the reverse-mode gradient in extended precision,
    what they are measured against; ``rounding[path]`` the analytic algorithms' running error
    bounds. An aliased array's gradient is the sum over its uses (query + key + value in
    self-attention).
    """

    gradients: tuple[dict[str, np.ndarray], ...]
    wide: dict[str, np.ndarray]
    rounding: dict[str, np.ndarray]

    @classmethod
    def of(
        cls,
        subject: Subject,
        inputs: Mapping[str, Any],
        cotangent: np.ndarray,
        paths: tuple[str, ...],
    ) -> SamePrecision:
        fn = subject.component.reference
        groups = tuple(alias_paths(inputs, p) for p in paths)
        same = dict(zip(paths, autodiff.vjp(fn, inputs, cotangent, groups), strict=True))
        # the framework form of tanh' and sigmoid' (from the output): exactly 0 at a saturated gate
        from_output = dict(
            zip(paths, autodiff.vjp(fn, inputs, cotangent, groups, output_form=True), strict=True)
        )
        gated = autodiff.gated()
        wide_inputs = cast_floats(dict(inputs), WIDE)
        wide = dict(
            zip(paths, autodiff.vjp(fn, wide_inputs, cotangent.astype(WIDE), groups), strict=True)
        )
        algorithms = [same, from_output]
        if gated:  # the output form at gate outputs a few ulps off, in both directions
            for sign in (1, -1, 0):
                nudge = autodiff.Nudge(NONLINEARITY_ULPS, subject.dtype.np_dtype, sign)
                nudged = autodiff.vjp(fn, wide_inputs, cotangent.astype(WIDE), groups, nudge=nudge)
                algorithms.append(dict(zip(paths, nudged, strict=True)))
        rounding: dict[str, np.ndarray] = {}
        for vjp in VJPS.get(subject.component.name, ()):
            with np.errstate(all="ignore"):
                grads, mags = vjp(**inputs, cotangent=cotangent)
            algorithms.append(
                {
                    # g is never empty: the sum is an array
                    p: cast(np.ndarray, sum(grads[a].astype(np.float64) for a in g))
                    for p, g in zip(paths, groups, strict=True)
                }
            )
            for p, g in zip(paths, groups, strict=True):
                rounding[p] = np.maximum(rounding.get(p, 0.0), sum(mags[a] for a in g))
        return cls(tuple(algorithms), wide, rounding)

    def error(self, path: str, t: np.ndarray, oracle: float) -> float:
        """The largest error of a same-precision algorithm along t, robust to luck: the l1 form
        sum_i |G_i - G_wide_i| |t_i| (no cancellation between entries can make it small by chance),
        or the error of <G, t> against the oracle, whichever is larger."""
        wide = self.wide[path].astype(np.float64)
        worst = 0.0
        for grads in self.gradients:
            g = np.asarray(grads[path], np.float64)
            worst = max(
                worst,
                float((np.abs(g - wide) * np.abs(t)).sum()),
                abs(float((g * t).sum()) - oracle),
            )
        return worst


def directional_check(
    subject: Subject,
    inputs: Mapping[str, Any],
    cotangent: np.ndarray,
    path: str,
    g: np.ndarray,
    seed: int,
    same: SamePrecision,
    max_step: MaxStep | None = None,
) -> None:
    """<g, t> against the oracle's central difference along a random t, within the gradient
    bound."""
    fn = subject.component.reference
    base = get_path(inputs, path)
    t = np.random.default_rng(seed).standard_normal(base.shape).astype(WIDE)
    t[~np.isfinite(base.astype(np.float64))] = 0  # a -inf mask entry has no derivative
    finite = _finite(base)
    e = np.cbrt(U_WIDE) * max(1.0, float(np.abs(finite).max()) if finite.size else 1.0)
    limit = (
        max_step(inputs, path, t.astype(np.float64), subject.dtype.unit_roundoff)
        if max_step
        else None
    )
    e = min(e, limit) if limit else e
    scale_c = subject.component.error_scale(inputs)
    oracle = directional_derivative(fn, inputs, path, t, cotangent, e, scale_c)
    t64, c64 = t.astype(np.float64), np.abs(cotangent.astype(np.float64))
    got = float((g.astype(np.float64) * t64).sum())
    y = np.asarray(fn(**cast_floats(dict(inputs), np.dtype(np.float64))), np.float64)
    amp = max(1.0, scale_c / max(float(np.abs(y).max()), 1e-300))
    magnitude = float((c64 * np.abs(oracle.jvp.astype(np.float64))).sum()) + float(
        (np.abs(g.astype(np.float64)) * np.abs(t64)).sum()
    )
    floor = GRAD_ULPS * subject.dtype.unit_roundoff * magnitude * amp
    if (
        path in same.rounding
    ):  # the running error bound of the analytic algorithm: what the backward pass rounds at
        floor = max(
            floor,
            GRAD_ULPS
            * subject.dtype.unit_roundoff
            * float((same.rounding[path] * np.abs(t64)).sum()),
        )
    same_err = same.error(path, t64, oracle.value)
    allowed = GRAD_MULTIPLIER * same_err + floor + ORACLE_MULT * oracle.error
    bound = GradBound(allowed, oracle.error, floor, subject.dtype.name, same_err)
    what = f"<vjp wrt {path}, t> vs the oracle's central difference along t"
    subject.check(compare(np.array(got), np.array(oracle.value), bound, what), inputs)


Draw = Callable[[st.DataObject, Subject, "str | None"], dict[str, Any]]


def cotangent(data: st.DataObject, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """A random N(0, 1) cotangent of the output's shape, in the test dtype (its seed a labelled
    draw)."""
    rng = np.random.default_rng(data.draw(seeds(), label="cotangent_seed"))
    return np.asarray(rng.standard_normal(shape), dtype=dtype.np_dtype)


def vjp_property(
    draw: Callable[[st.DataObject, Any, Any], dict[str, Any]],
    wrt: Callable[[Any], tuple[str, ...]],
    variants: tuple[Any, ...] = (None,),
    max_step: MaxStep | None = None,
) -> Property:
    """The differential gradient property of a component whose inputs come from draw(data, dtype,
    variant): every path in wrt(variant) checked. A piecewise-smooth component (ReLU) gives
    max_step, so no difference straddles a kink."""

    def check(subject: Subject, data: st.DataObject, variant: Any) -> None:
        inputs = draw(data, subject.dtype, variant)
        # the output's shape from a plain float64 reference call: the oracle (extended precision)
        # would cost most of an example the adapter then refuses as unsupported
        with np.errstate(all="ignore"):
            expected_shape = np.shape(
                subject.component.reference(**cast_floats(dict(inputs), np.dtype(np.float64)))
            )
        rng = np.random.default_rng(data.draw(seeds(), label="cotangent_seed"))
        cotangent = np.asarray(rng.standard_normal(expected_shape), dtype=subject.dtype.np_dtype)
        paths = wrt(variant)
        grads = call_vjp(subject, inputs, cotangent, paths)
        same = SamePrecision.of(subject, inputs, cotangent, paths)
        for i, path in enumerate(paths):
            directional_check(
                subject,
                inputs,
                cotangent,
                path,
                grads[path],
                int(rng.integers(2**31)) + i,
                same,
                max_step,
            )

    return Property(
        "vjp_matches_finite_differences",
        "The adapter's vector-Jacobian product agrees with central differences of the oracle along "
        "random directions.",
        check,
        variants,
        GRAD_DTYPES,
        "gradient",
    )
