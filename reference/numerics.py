"""Sums as the reference's same-precision evaluation must do them: low precisions accumulated in
float32 and rounded once.

NumPy sums float16 so (pairwise, in float32), and every kernel accumulates 16-bit inputs in float32.
ml_dtypes' bfloat16 sums one element at a time in bfloat16: ``np.ones(4096, bfloat16).sum()`` is
256, every later 1 lost to rounding. That is no algorithm any library uses, and the tolerance
policy's same-precision term measured with it was loose by the error of that stagnation: a row
softmax over 1025 keys in bfloat16 let a kernel with a bfloat16 accumulator pass.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

__all__: list[str] = []  # helpers, no components

_BF16 = np.dtype(ml_dtypes.bfloat16)


def total(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """sum of x over axis, in float32 for bfloat16 input (then rounded back to it)."""
    if getattr(x, "dtype", None) == _BF16:
        return np.sum(x.astype(np.float32), axis=axis, keepdims=keepdims).astype(_BF16)
    return np.sum(x, axis=axis, keepdims=keepdims)


def average(x: Any, axis: int | None = None, keepdims: bool = False) -> Any:
    """mean of x over axis, in float32 for bfloat16 input (then rounded back to it)."""
    if getattr(x, "dtype", None) == _BF16:
        return np.mean(x.astype(np.float32), axis=axis, keepdims=keepdims).astype(_BF16)
    return np.mean(x, axis=axis, keepdims=keepdims)
