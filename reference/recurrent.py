"""The oracle for recurrent cells and encoders (Elman 1990; Cho et al. 2014; Hochreiter &
Schmidhuber 1997; Sutskever et al. 2014).

Canonical cell parameters (weights act on the right, y = x W + b, as everywhere in the spec):
    w_x (E, G N), w_h (N, G N), b_x (G N,), b_h (G N,)
with G gate blocks of N columns each, in the SPEC's order (libraries differ; adapters map):
    rnn:  (h,)              gru: (z, r, n) update, reset, candidate        lstm: (i, f, g, o)
torch stores GRU blocks as (r, z, n) and LSTM as (i, f, g, o), transposed; flax keeps one Dense per
gate. An LSTM's state is [h | c] concatenated on the last axis (B, 2N); the output of a step is that
state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from reference.attention import _matmul
from reference.checks import is_array

# The components (the numpy adapter re-exports exactly these).
__all__ = ["context_vector", "recurrent_cell", "rnn_encoder"]

GATES = {"rnn": ("h",), "gru": ("z", "r", "n"), "lstm": ("i", "f", "g", "o")}

Params = Mapping[str, np.ndarray]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) = e^min(x, 0) / (e^min(x, 0) + e^min(-x, 0)): no exponent is positive, so a
    large |x| (saturated gates) no longer overflows exp, and autograd's derivative at x = 0 stays
    1/4."""
    a, b = np.exp(np.minimum(x, 0)), np.exp(np.minimum(-x, 0))
    return (a / (a + b)).astype(x.dtype)


def _fail(component: str, message: str) -> None:
    raise ValueError(f"{component}: {message}")


def _check_cell(component: str, params: Params, cell: str, E: int) -> int:
    """The cell's params must be the canonical layout for E inputs; return N."""
    if cell not in GATES:
        _fail(component, f"cell must be one of {tuple(GATES)}; got {cell!r}")
    missing = [k for k in ("w_x", "w_h", "b_x", "b_h") if k not in params]
    if missing:
        _fail(
            component,
            f"params must have w_x, w_h, b_x, b_h; got {sorted(params)} (missing {missing})",
        )
    G, N = len(GATES[cell]), params["w_h"].shape[0]
    want = {"w_x": (E, G * N), "w_h": (N, G * N), "b_x": (G * N,), "b_h": (G * N,)}
    for name, shape in want.items():
        if params[name].shape != shape:
            _fail(
                component,
                f"{cell} params[{name!r}] must be {shape} (E={E}, G={G} gates, N={N}); got "
                f"{params[name].shape}",
            )
    return N


def _check_float(component: str, name: str, x: Any, ndim: int, legend: str) -> None:
    if (
        not is_array(x)
        or (x.dtype.kind != "f" and x.dtype.name != "bfloat16")
        or x.ndim != ndim
        or 0 in x.shape
    ):
        _fail(
            component,
            f"{name} must be a non-empty float array {legend}; got "
            f"{getattr(x, 'shape', type(x).__name__)}",
        )


def recurrent_cell(
    x: np.ndarray, state: np.ndarray, params: Params, cell: str = "gru"
) -> np.ndarray:
    """One step. x (B, E), state (B, N) or, for the LSTM, [h | c] (B, 2N) -> the new state, same
    shape.

    rnn:  h' = tanh(x W_x + b_x + h W_h + b_h)
    gru:  z = sigma(x W_xz + b_xz + h W_hz + b_hz),  r = sigma(x W_xr + b_xr + h W_hr + b_hr),
          n = tanh(x W_xn + b_xn + r * (h W_hn + b_hn)),  h' = (1 - z) * n + z * h (reset applied
          after the recurrent matmul, as cuDNN, torch and flax do; Cho et al. apply it before)
    lstm: i, f, o = sigma(.), g = tanh(.) of x W_x + b_x + h W_h + b_h;  c' = f * c + i * g;  h' = o
    * tanh(c')
    """
    _check_float("recurrent_cell", "x", x, 2, "(B, E)")
    N = _check_cell("recurrent_cell", params, cell, x.shape[1])
    width = 2 * N if cell == "lstm" else N
    _check_float("recurrent_cell", "state", state, 2, f"(B, {'2N' if cell == 'lstm' else 'N'})")
    if state.shape != (x.shape[0], width):
        _fail(
            "recurrent_cell",
            f"state must be (B, {'2N' if cell == 'lstm' else 'N'})=({x.shape[0]}, {width}); got "
            f"{state.shape}",
        )
    h = state[:, :N]  # (B, N)
    gx = _matmul(x, params["w_x"].astype(x.dtype)) + params["b_x"].astype(x.dtype)  # (B, G N)
    gh = _matmul(h, params["w_h"].astype(x.dtype)) + params["b_h"].astype(x.dtype)  # (B, G N)
    if cell == "rnn":
        return np.tanh(gx + gh)
    if cell == "gru":
        z = _sigmoid(gx[:, :N] + gh[:, :N])
        r = _sigmoid(gx[:, N : 2 * N] + gh[:, N : 2 * N])
        n = np.tanh(gx[:, 2 * N :] + r * gh[:, 2 * N :])
        return ((1 - z) * n + z * h).astype(x.dtype)
    g = gx + gh  # (B, 4N): blocks i, f, g, o
    i, f, o = _sigmoid(g[:, :N]), _sigmoid(g[:, N : 2 * N]), _sigmoid(g[:, 3 * N :])
    c = f * state[:, N:] + i * np.tanh(g[:, 2 * N : 3 * N])
    return np.concatenate([o * np.tanh(c), c], axis=1).astype(x.dtype)  # (B, 2N): [h' | c']


def _check_lengths(component: str, lengths: np.ndarray | None, B: int, T: int) -> None:
    if lengths is None:
        return
    lengths = np.asarray(lengths)
    if (
        lengths.shape != (B,)
        or lengths.dtype.kind not in "iu"
        or (lengths < 1).any()
        or (lengths > T).any()
    ):
        _fail(
            component,
            f"lengths must be (B,)=({B},) ints in [1, T={T}]; got {lengths.shape} "
            f"{lengths.tolist()}",
        )


def _run(
    x: np.ndarray, params: Params, cell: str, lengths: np.ndarray, reverse: bool
) -> tuple[np.ndarray, np.ndarray]:
    """One direction over (B, T, E) -> outputs (B, T, N) (0 past each length) and the final h (B,
    N).

    Backward: steps run T-1 .. 0 but a sequence's state stays 0 until t < length, so it starts at
    its own last real step (torch's packed-sequence semantics)."""
    B, T, _ = x.shape
    N = params["w_h"].shape[0]
    state = np.zeros((B, 2 * N if cell == "lstm" else N), x.dtype)
    out: list[np.ndarray] = [np.zeros((B, N), x.dtype)] * T
    for t in reversed(range(T)) if reverse else range(T):
        active = (t < lengths)[:, None]  # (B, 1)
        state = np.where(active, recurrent_cell(x[:, t], state, params, cell), state)
        out[t] = np.where(active, state[:, :N], x.dtype.type(0))  # (B, N)
    return np.stack(out, axis=1), state[:, :N]  # (B, T, N), (B, N)


def _encode(
    component: str,
    x: np.ndarray,
    params: Mapping[str, Params],
    cell: str,
    lengths: np.ndarray | None,
) -> list:
    _check_float(component, "x", x, 3, "(B, T, E)")
    if "forward" not in params or not set(params) <= {"forward", "backward"}:
        _fail(
            component,
            f"params must be {{'forward': cell params[, 'backward': cell params]}}; got keys "
            f"{sorted(params)}",
        )
    for direction in params.values():
        _check_cell(component, direction, cell, x.shape[2])
    if len({p["w_h"].shape[0] for p in params.values()}) > 1:
        _fail(
            component,
            "both directions must have the same N; got "
            f"{[p['w_h'].shape[0] for p in params.values()]}",
        )
    B, T, _ = x.shape
    _check_lengths(component, lengths, B, T)
    lens = np.full(B, T) if lengths is None else np.asarray(lengths)
    return [
        _run(x, params[d], cell, lens, reverse=d == "backward")
        for d in ("forward", "backward")
        if d in params
    ]


def rnn_encoder(
    x: np.ndarray,
    params: Mapping[str, Params],
    cell: str = "gru",
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """h_t = cell(x_t, h_{t-1}), h_0 = 0, over x (B, T, E) -> outputs (B, T, N) or, bidirectional
    (params has "backward"), [forward h_t | backward h_t] (B, T, 2N), the backward direction run
    from each sequence's last real step to its first. Outputs past a sequence's length (lengths
    (B,)) are 0."""
    return np.concatenate(
        [out for out, _ in _encode("rnn_encoder", x, params, cell, lengths)], axis=-1
    )


def context_vector(
    x: np.ndarray,
    params: Mapping[str, Params],
    cell: str = "gru",
    lengths: np.ndarray | None = None,
) -> np.ndarray:
    """The fixed-size summary c of Sutskever et al. 2014: the encoder's final hidden state, h at
    each sequence's last real step (B, N); bidirectional: [forward h_{len-1} | backward h_0] (B,
    2N). (LSTM: h, not c.)"""
    return np.concatenate(
        [final for _, final in _encode("context_vector", x, params, cell, lengths)], axis=-1
    )
