"""The dtypes the suite tests, and the numeric facts the tolerance policy needs about each.

NumPy has no bfloat16; ``ml_dtypes`` supplies it, so every dtype here is a NumPy dtype and adapters
receive and return plain NumPy arrays whatever the precision.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    """One tested precision: its id in test names and its NumPy dtype."""

    name: str
    np_dtype: np.dtype

    def __str__(self) -> str:
        return self.name

    @property
    def unit_roundoff(self) -> float:
        """u = 2^-p for p significand bits: the largest relative error of one rounding."""
        return float(ml_dtypes.finfo(self.np_dtype).eps) / 2

    @property
    def max(self) -> float:
        return float(ml_dtypes.finfo(self.np_dtype).max)

    @property
    def min(self) -> float:
        """The most negative finite value (HuggingFace's fill for masked logits)."""
        return float(ml_dtypes.finfo(self.np_dtype).min)

    def holds_normally(self, square: float) -> bool:
        """Whether a mean of squares (a variance) this large survives in the dtype: above its
        smallest normal with room (1e3x), so the squares summed into it have not underflowed. With
        eps = 0 a normalisation is 0/0 or x/0 below that: outside the domain."""
        return square > 1e3 * float(ml_dtypes.finfo(self.np_dtype).tiny)

    @property
    def significand_bits(self) -> int:
        """p, counting the implicit bit: float16 11, bfloat16 8, float32 24, float64 53."""
        return int(ml_dtypes.finfo(self.np_dtype).nmant) + 1

    @property
    def is_low(self) -> bool:
        """float16 and bfloat16: the precisions where a library may compute in float32 inside."""
        return self.significand_bits < 24


FLOAT64 = DType("float64", np.dtype(np.float64))
FLOAT32 = DType("float32", np.dtype(np.float32))
FLOAT16 = DType("float16", np.dtype(np.float16))
BFLOAT16 = DType("bfloat16", np.dtype(ml_dtypes.bfloat16))

ALL_DTYPES: tuple[DType, ...] = (FLOAT64, FLOAT32, FLOAT16, BFLOAT16)
FULL_PRECISION: tuple[DType, ...] = (FLOAT64, FLOAT32)
BY_NAME = {d.name: d for d in ALL_DTYPES}


def oracle_dtype(dtype: DType) -> np.dtype:
    """The precision the oracle runs in when checking ``dtype``.

    float64 for every test dtype except float64 itself, which is checked against an x87
    extended-precision (64-bit significand) evaluation where the platform has one. Where
    ``np.longdouble`` is plain float64 (Windows, macOS arm64) this returns float64, the
    same-precision error is then 0 and only the policy's floor remains.
    """
    if dtype == FLOAT64:
        return np.dtype(np.longdouble)
    return np.dtype(np.float64)


def dtype_of(array: np.ndarray) -> DType | None:
    """The tested DType of an array, or None for bool/int/other arrays."""
    for d in ALL_DTYPES:
        if array.dtype == d.np_dtype:
            return d
    return None


# Components whose outputs are exact (boolean masks, token ids) have no precision axis.
EXACT = DType("exact", np.dtype(np.float64))
BY_NAME[EXACT.name] = EXACT
