"""The oracle for rotary position embedding (RoPE, Su et al. 2021, "RoFormer"), named as in the
spec (spec/positions.py).

A vector at position p has its first ``rotary_dim`` dimensions cut into rotary_dim / 2 pairs; pair i
is a point of the plane rotated by the angle p * theta_i, theta_i = base^(-2i / rotary_dim):

    (a, b) -> (a cos(p theta_i) - b sin(p theta_i),  a sin(p theta_i) + b cos(p theta_i))

so that <rope(q, m), rope(k, n)> depends on m - n only. Which dimensions form pair i is the layout,
the convention implementations differ on:

    "half"         (i, i + rotary_dim / 2)   GPT-NeoX, HF Llama / Mistral / Qwen2 (rotate_half)
    "interleaved"  (2i, 2i + 1)              RoFormer, GPT-J, torchtune, Meta's llama (complex view)

Dimensions from rotary_dim on pass through unchanged (GPT-NeoX's rotary_pct, GPT-J's rotary_dim,
flash-attention's rotary_dim < headdim). The angle is formed in float64 (in the input's precision
above it) whatever the dtype of x; its cosine and sine are rounded to x's dtype, and the rotation is
computed in x's dtype. (The spec's bound allows an angle formed in float32 below float64, as the
libraries form it: spec/positions.py.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.checks import _fail, check_float_array, value

__all__ = ["rotary_embedding"]

ROTARY_LAYOUTS = ("half", "interleaved")


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_ints(name: str, x: Any, shapes: tuple[tuple[int, ...], ...], legend: str) -> None:
    """x is an int array of one of the shapes (or, for a 0-d shape, an int), every entry >= 0."""
    if _is_int(x):
        x = np.asarray(x)
    if not isinstance(x, np.ndarray) or x.dtype.kind not in "iu":
        _fail("rotary_embedding", f"{name} must be ints {legend}; got {_what(x)}")
    if x.shape not in shapes:
        _fail("rotary_embedding", f"{name} must have shape {legend}; got {x.shape}")
    if (x < 0).any():
        _fail("rotary_embedding", f"{name} must be >= 0; got {int(x.min())}")


def _what(x: Any) -> str:
    return f"{x.dtype} array" if isinstance(x, np.ndarray) else type(x).__name__


def check_rotary(
    x: Any, positions: Any, offset: Any, base: Any, rotary_dim: Any, layout: Any
) -> int:
    """The rules of rotary_embedding's arguments; returns the rotary dimension."""
    check_float_array("rotary_embedding", "x", x, 4, "(B, H, T, K)")
    B, _, T, K = value(x).shape
    if positions is not None:
        _check_ints("positions", value(positions), ((T,), (B, T)), f"(T,) = ({T},) or (B, T)")
    _check_ints("offset", value(offset), ((), (B,)), f"an int or (B,) = ({B},)")
    if isinstance(base, bool) or not (
        isinstance(base, (int, float, np.integer, np.floating)) and np.isfinite(base) and base > 1
    ):
        _fail("rotary_embedding", f"base must be a finite number > 1; got {base!r}")
    r = K if rotary_dim is None else rotary_dim
    if not _is_int(r) or r < 2 or r % 2 or r > K:
        _fail(
            "rotary_embedding",
            f"rotary_dim must be an even int in [2, K = {K}] (None for K); got {rotary_dim!r}"
            + (" (K is odd: give an even rotary_dim)" if rotary_dim is None else ""),
        )
    if layout not in ROTARY_LAYOUTS:
        _fail("rotary_embedding", f"layout must be one of {ROTARY_LAYOUTS}; got {layout!r}")
    return int(r)


def rotary_angles(
    positions: np.ndarray, rotary_dim: int, base: float, work: type[np.floating[Any]]
) -> np.ndarray:
    """angle[..., i] = p * base^(-2i / rotary_dim) in ``work`` precision: (...) -> (..., r / 2)."""
    theta = np.power(work(base), -np.arange(0, rotary_dim, 2, dtype=work) / work(rotary_dim))
    return positions.astype(work)[..., None] * theta  # (..., r/2)


def rotary_embedding(
    x: np.ndarray,
    positions: np.ndarray | None = None,
    offset: int | np.ndarray = 0,
    base: float = 10000.0,
    rotary_dim: int | None = None,
    layout: str = "half",
) -> np.ndarray:
    """RoPE: pair i of x[b, h, t] rotated by p * base^(-2i / rotary_dim), p = positions[(b,) t] +
    offset[(b)].

    x (B, H, T, K) -> (B, H, T, K) in x's dtype. positions None means 0 .. T - 1; a (T,) array
    serves every batch row, a (B, T) one gives each row its own (a packed row restarts at 0);
    offset (an int or (B,)) is added to them, as a cache position. rotary_dim (even, <= K, default
    K) dims are rotated and the rest pass through; layout pairs dims (i, i + r/2) ("half") or (2i,
    2i + 1) ("interleaved").
    """
    r = check_rotary(x, positions, offset, base, rotary_dim, layout)
    B, _, T, _ = x.shape
    pos = np.arange(T) if positions is None else positions  # (T,) or (B, T)
    pos = np.broadcast_to(pos, (B, T)) + np.reshape(offset, (-1, 1))  # (B, T)
    work: type[np.floating[Any]] = np.longdouble if x.dtype == np.longdouble else np.float64
    angle = rotary_angles(pos, r, base, work)[:, None]  # (B, 1, T, r/2)
    cos, sin = np.cos(angle).astype(x.dtype), np.sin(angle).astype(x.dtype)
    if layout == "half":
        a, b = x[..., : r // 2], x[..., r // 2 : r]  # (B, H, T, r/2) each
    else:
        a, b = x[..., 0:r:2], x[..., 1:r:2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if layout == "half":
        rotated = np.concatenate([ra, rb], axis=-1)  # (B, H, T, r)
    else:
        rotated = np.stack([ra, rb], axis=-1).reshape(*ra.shape[:-1], r)  # (B, H, T, r): a0 b0 a1..
    out = np.concatenate([rotated, x[..., r:]], axis=-1)  # (B, H, T, K)
    return out
