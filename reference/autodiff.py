"""Reverse-mode derivatives of the oracle itself, in any precision, by ``autograd`` (HIPS).

``vjp(fn, inputs, cotangent, paths)`` runs a reference function with NumPy replaced by
``autograd.numpy`` in every reference module, so the very code of the oracle is differentiated: no
hand-written backward. Evaluated in the test dtype it is the gradient policy's same-precision
algorithm for every component (spec/gradients.py), as the plain forward evaluation is for outputs;
evaluated in extended precision it is a reference the same-precision one is measured against. The
finite differences of the oracle (spec/gradients.py) stay the oracle an adapter is judged by.

The reference is written so that this works: no in-place writes into arrays that carry derivatives,
checks that look through autograd's boxes (reference/checks.py), and erf as a primitive whose
derivative is 2 / sqrt(pi) exp(-x^2).

Two forms of the saturating nonlinearities' derivatives. autograd differentiates tanh by its input
(1 / cosh(x)^2) and the reference's sigmoid through its exponentials: accurate in the tails, where
the derivative is e^-|x|. torch and jax compute them from the output, as every framework does:
sigma' = y (1 - y), tanh' = 1 - y^2 (torch's sigmoid_backward, tanh_backward; jax's logistic and
tanh JVPs). Once y rounds to 1 in the test dtype that is exactly 0, an absolute error of u(dtype)
however small the true derivative: a saturated LSTM gate's gradient is 0 in float32 against a true
e^-17. ``vjp(..., output_form=True)`` differentiates in that form, so the same-precision term of
the gradient policy covers both algorithms.

In the output form the derivative's error is that of y, amplified: 1 - y^2 at y = 1 - 1e-6 loses
six digits, so a framework whose tanh is a few ulps off (XLA's float32 tanh: 4.4 ulps at most,
measured) differs from the reference's correctly rounded one by percents of a saturated gate's
derivative. ``vjp(..., nudge=Nudge(ulps, dtype, sign))`` evaluates the output form with every
tanh and sigmoid output moved by ``ulps`` ulps of ``dtype`` (sign +1, -1, or 0 for a random sign
per entry) in the derivative only, so the gradient policy can measure what that costs.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd import make_vjp
from autograd.extend import defvjp, primitive

import reference
from reference import layers, recurrent

_PLAIN_ERF = layers.erf


@primitive
def _erf(x: np.ndarray) -> np.ndarray:
    return _PLAIN_ERF(x)


defvjp(_erf, lambda ans, x: lambda g: g * (2.0 / np.sqrt(np.pi)) * anp.exp(-x * x))

_PLAIN_SIGMOID = recurrent._sigmoid


@primitive
def _tanh_from_output(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


@primitive
def _sigmoid_from_output(x: np.ndarray) -> np.ndarray:
    return _PLAIN_SIGMOID(x)


@dataclass(frozen=True)
class Nudge:
    """Gate outputs moved by ulps ulps of dtype in the derivative: sign +1, -1, or 0 for a random
    sign per entry (drawn from seed)."""

    ulps: float
    dtype: np.dtype
    sign: int
    seed: int = 0


class _State:
    """What the traced derivatives read: the nudge in force and whether a gate was differentiated
    from its output at all (no gate: the nudged evaluations would repeat the plain one)."""

    nudge: Nudge | None = None
    rng: np.random.Generator | None = None
    gated = False


def _nudged(ans: np.ndarray) -> np.ndarray:
    _State.gated = True
    n = _State.nudge
    if n is None:
        return ans
    value = np.asarray(ans)
    step = np.spacing(np.abs(value).astype(n.dtype)).astype(value.dtype) * n.ulps
    if n.sign:
        return value + n.sign * step
    assert _State.rng is not None
    return value + np.where(_State.rng.random(value.shape) < 0.5, -step, step)


def _tanh_vjp(ans: np.ndarray, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    y = _nudged(ans)
    return lambda g: g * (1 - y * y)


def _sigmoid_vjp(ans: np.ndarray, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    y = _nudged(ans)
    return lambda g: g * y * (1 - y)


# In the test dtype: y, 1 - y * y and 1 - y all round as torch's and jax's backward kernels do.
defvjp(_tanh_from_output, _tanh_vjp)
defvjp(_sigmoid_from_output, _sigmoid_vjp)


class _OutputForm:
    """autograd.numpy with tanh differentiated from its output."""

    tanh = staticmethod(_tanh_from_output)

    def __getattr__(self, name: str) -> Any:
        return getattr(anp, name)


def _modules() -> list[Any]:
    return [
        importlib.import_module(f"reference.{m.name}")
        for m in pkgutil.iter_modules(reference.__path__)
    ]


@contextmanager
def _traced(output_form: bool = False, nudge: Nudge | None = None) -> Iterator[None]:
    """Every reference module computes with autograd.numpy for the duration (not thread-safe); with
    output_form, tanh and sigmoid are differentiated from their outputs, nudged by nudge."""
    modules = [
        m
        for m in _modules()
        if getattr(m, "np", None) is np
        and m.__name__ not in ("reference.checks", "reference.autodiff")
    ]
    namespace = _OutputForm() if output_form else anp
    for m in modules:
        m.np = namespace
    layers.erf = _erf
    if output_form:
        recurrent._sigmoid = _sigmoid_from_output
    _State.nudge, _State.gated = nudge, False
    _State.rng = np.random.default_rng(nudge.seed) if nudge else None
    try:
        yield
    finally:
        _State.nudge = _State.rng = None
        for m in modules:
            m.np = np
        layers.erf = _PLAIN_ERF
        recurrent._sigmoid = _PLAIN_SIGMOID


def get_path(inputs: Mapping[str, Any], path: str) -> Any:
    """inputs["params"]["w_q"] for "params.w_q"."""
    value: Any = inputs
    for key in path.split("."):
        value = value[key]
    return value


def set_path(inputs: Mapping[str, Any], path: str, new: Any) -> dict[str, Any]:
    """A copy of inputs with the value at path replaced (dicts along the path copied, the rest
    shared)."""
    head, _, rest = path.partition(".")
    return {**inputs, head: set_path(inputs[head], rest, new) if rest else new}


def set_paths(inputs: Mapping[str, Any], paths: tuple[str, ...], new: Any) -> dict[str, Any]:
    """set_path for each of paths (an array and its aliases), all to the same new value."""
    out = dict(inputs)
    for path in paths:
        out = set_path(out, path, new)
    return out


def alias_paths(inputs: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """path and every top-level input that is the very same array (self-attention passes query as
    key and value): an adapter differentiates that array once, through every use, so the oracle
    moves every use."""
    target = get_path(inputs, path)
    return (path, *(k for k, v in inputs.items() if k != path and v is target))


def vjp(
    fn: Callable[..., Any],
    inputs: Mapping[str, Any],
    cotangent: np.ndarray,
    paths: tuple[tuple[str, ...], ...],
    output_form: bool = False,
    nudge: Nudge | None = None,
) -> list[np.ndarray]:
    """The gradient of <cotangent, fn(**inputs)> with respect to each group of paths (an array and
    its aliases: self-attention passes one array as query, key and value, and all of its uses move),
    in the precision of the inputs. Entries at non-finite inputs (a -inf mask) are 0. output_form:
    tanh and sigmoid differentiated from their outputs, as frameworks do, their outputs nudged by
    nudge (module docstring)."""
    leaves = [get_path(inputs, group[0]) for group in paths]

    def forward(*values: Any) -> Any:
        moved = dict(inputs)
        for group, value in zip(paths, values, strict=True):
            moved = set_paths(moved, group, value)
        with _traced(output_form or nudge is not None, nudge):
            return fn(**moved)

    with np.errstate(all="ignore"):
        pullback, out = make_vjp(forward, argnum=tuple(range(len(leaves))))(*leaves)
        grads = pullback(np.asarray(cotangent, dtype=np.asarray(out).dtype))
    return [
        np.where(np.isfinite(x), np.nan_to_num(g), 0).astype(x.dtype)
        for g, x in zip(grads, leaves, strict=True)
    ]


def gated() -> bool:
    """Whether the last traced evaluation differentiated a tanh or sigmoid from its output."""
    return _State.gated
