"""The tolerance policy: how far an adapter's output may be from the oracle, per dtype, derived.

For a component f, inputs x already rounded to the test dtype d, and the adapter's output y:

    expected  = f(x) evaluated in the oracle precision (float64; x87 extended for d = float64)
    same      = f(x) evaluated plainly in d by the reference itself (the error d alone causes)
    allowed   = MULTIPLIER * max|same - expected|  +  FLOOR_ULPS * u(d) * error_scale(x)
    pass iff    max|y - expected| <= allowed

This is flash-attention's rule (2x the error of a same-precision reference, see shared/README.md)
with a floor, as FlashAttention-3 adds, because the same-precision error can be 0 by luck on small
inputs while a correct kernel that sums in another order is off by a few rounding units.
``error_scale`` is the component's own magnitude at which rounding happens (its spec states the
formula: e.g. for attention weights 1 + the largest sum |scale * q_k * k_k| of a logit, since a
logit is a dot product and a weight moves by at most a quarter of its logit's error).
No test holds a tolerance number: tests ask this module, and every comparison reports
observed error / allowed bound.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from spec.dtypes import DType, oracle_dtype

# A small multiple: flash-attention uses 2 for outputs (3 for gradients); 4 leaves room for a
# library that sums in a different order than the reference yet is as accurate. Every run prints the
# closest a passing test came to its bound, per adapter (measured in the README, "Tolerance
# policy").
MULTIPLIER = 4.0
# A few rounding units at the computation's magnitude.
FLOOR_ULPS = 8.0


def cast_floats(value: Any, dtype: np.dtype) -> Any:
    """Cast every floating array in value (arrays, dicts of arrays, tuples) to dtype; keep the rest.

    A ``dtype`` argument (a component with no float input names its output precision so) is raised
    too.
    """
    if isinstance(value, Mapping) and isinstance(value.get("dtype"), str):
        return {
            **{k: cast_floats(v, dtype) for k, v in value.items()},
            "dtype": np.dtype(dtype).name,
        }
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" or value.dtype.name == "bfloat16":
            return value.astype(dtype)
        return value
    if isinstance(value, Mapping):
        return {k: cast_floats(v, dtype) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(cast_floats(v, dtype) for v in value)
    return value


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in the wider of the two precisions; equal infinities (incl. -inf masks) count as
    0, and so does NaN against NaN (the oracle has NaN only under the ``fully_masked_row=nan``
    profile)."""
    wide = np.longdouble if np.longdouble in (a.dtype, b.dtype) else np.float64
    a, b = np.asarray(a, dtype=wide), np.asarray(b, dtype=wide)
    with np.errstate(invalid="ignore"):
        d = np.abs(a - b)
    return np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, d)


@dataclass(frozen=True)
class Bound:
    """The allowed error and where it came from."""

    allowed: float
    same_precision_error: float
    floor: float
    dtype: str

    def explain(self) -> str:
        return (
            f"allowed {self.allowed:.3g} = {MULTIPLIER:g} x same-precision error "
            f"{self.same_precision_error:.3g} + floor {self.floor:.3g} ({FLOOR_ULPS:g} "
            f"u({self.dtype}) x scale)"
        )

    def __add__(self, other: Bound) -> Bound:
        """The bound on |y1 - y2| when each of y1, y2 is within its own bound of the same truth."""
        return Bound(
            self.allowed + other.allowed,
            self.same_precision_error + other.same_precision_error,
            self.floor + other.floor,
            self.dtype,
        )

    def times(self, factor: float) -> Bound:
        """The bound on a sum of ``factor`` quantities each within this bound."""
        return Bound(
            self.allowed * factor,
            self.same_precision_error * factor,
            self.floor * factor,
            self.dtype,
        )


def oracle(fn: Callable[..., np.ndarray], inputs: Mapping[str, Any], dtype: DType) -> np.ndarray:
    """fn evaluated on the (already rounded) inputs in the oracle precision for dtype."""
    return fn(**cast_floats(dict(inputs), oracle_dtype(dtype)))


def bound_for(
    fn: Callable[..., np.ndarray],
    inputs: Mapping[str, Any],
    dtype: DType,
    expected: np.ndarray,
    error_scale: float,
) -> Bound:
    """The policy's allowed max-abs error for fn on inputs at dtype (see the module docstring)."""
    floor = FLOOR_ULPS * dtype.unit_roundoff * max(error_scale, 0.0)
    if expected.dtype.kind in "biu":
        return Bound(0.0, 0.0, 0.0, dtype.name)  # masks, token ids: exact
    with np.errstate(all="ignore"):
        same = np.asarray(fn(**dict(inputs)))
    err = _abs_diff(same, expected)
    same_err = float(err.max()) if err.size else 0.0
    if not np.isfinite(same_err):
        # The plain same-precision evaluation overflowed: no derived term; the floor stands alone,
        # so an adapter that also overflows fails on its non-finite output instead.
        same_err = 0.0
    return Bound(MULTIPLIER * same_err + floor, same_err, floor, dtype.name)


@dataclass(frozen=True)
class Comparison:
    """The result of comparing got with expected: worst error, where, and the bound."""

    max_error: float
    where: tuple[int, ...]
    got: float
    expected: float
    bound: Bound
    what: str

    @property
    def ok(self) -> bool:
        return self.max_error <= self.bound.allowed

    @property
    def ratio(self) -> float:
        """observed / allowed: how much of the bound was used (0 when both are 0)."""
        if self.bound.allowed == 0:
            return 0.0 if self.max_error == 0 else float("inf")
        return self.max_error / self.bound.allowed

    def report(self) -> str:
        return (
            f"{self.what}: max |got - expected| = {self.max_error:.3g} at {self.where} "
            f"(got {self.got:.6g}, expected {self.expected:.6g}); {self.bound.explain()}"
        )


def compare(
    got: np.ndarray,
    expected: np.ndarray,
    bound: Bound,
    what: str = "output",
    select: np.ndarray | None = None,
) -> Comparison:
    """Compare arrays of one shape, optionally only where ``select`` (broadcastable bool) is
    True."""
    err = _abs_diff(got, expected)
    if select is not None:
        err = np.where(np.broadcast_to(select, err.shape), err, 0.0)
    if err.size == 0:
        return Comparison(0.0, (), 0.0, 0.0, bound, what)
    nan = np.isnan(err)
    flat = int(np.argmax(nan)) if nan.any() else int(np.argmax(err))
    where = tuple(int(i) for i in np.unravel_index(flat, err.shape))
    max_error = float("inf") if nan.any() else float(err[where])
    return Comparison(
        max_error,
        where,
        float(np.asarray(got)[where]),
        float(np.asarray(expected)[where]),
        bound,
        what,
    )
