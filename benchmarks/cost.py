"""FLOP and bytes-moved models, one function per benchmarked component, named like the component.

Each returns a Cost: the work the component must do (FLOPs) and the bytes it must move at least
(read every input once, write every output once: the traffic of a fused kernel). Whether it is
compute- or memory-bound decides which measured peak its throughput is compared with.
Shape legend: B batch, H heads, T query length, S key length, K head dim, D model dim, R rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float
    # "compute": report TFLOP/s against the matmul peak; "memory": GB/s against the copy peak
    bound: str


def visible_pairs(T: int, S: int, causal: bool, window: int | None = None) -> int:
    """How many (query, key) pairs are visible: query i (top-left aligned) sees keys j with j <= i
    when causal and i - window <= j <= i under a sliding window (left = window, right = 0, the
    spec's ``window=(window, 0)``). The count a kernel that skips invisible blocks does work for."""
    i = np.arange(T)
    lo = np.zeros(T, dtype=np.int64) if window is None else np.maximum(i - window, 0)
    hi = np.minimum(i, S - 1) if causal or window is not None else np.full(T, S - 1)
    return int(np.maximum(hi - lo + 1, 0).sum())


def scaled_dot_product_attention(
    B: int,
    H: int,
    T: int,
    S: int,
    K: int,
    itemsize: int,
    causal: bool,
    kv_heads: int | None = None,
    window: int | None = None,
) -> Cost:
    """softmax(Q K^T / sqrt(K)) V: 2 K FLOPs per visible pair for Q K^T and 2 K for P V, so 4 B H T
    S K (FlashAttention's count; the softmax's exp and sums, and a soft-cap's tanh, are not
    counted), H the query heads. Causal or windowed: only the visible pairs. Bytes: q and the output
    (H heads) read and written once, k and v (kv_heads, fewer under grouped-query attention) read
    once: B (2 T H + 2 S Hkv) K items."""
    Hkv = H if kv_heads is None else kv_heads
    return Cost(
        4.0 * B * H * K * visible_pairs(T, S, causal, window),
        float(B * (2 * T * H + 2 * S * Hkv) * K * itemsize),
        "compute",
    )


def softmax(R: int, N: int, itemsize: int) -> Cost:
    """Row softmax of (R, N): read and write every element once; ~5 FLOPs each (max, sub, exp, sum,
    div)."""
    return Cost(5.0 * R * N, 2.0 * R * N * itemsize, "memory")


def layer_norm(R: int, D: int, itemsize: int) -> Cost:
    """LayerNorm of (R, D) rows: x read and y written once, gamma and beta read once; ~8 FLOPs
    each."""
    return Cost(8.0 * R * D, float((2 * R * D + 2 * D) * itemsize), "memory")


def sinusoidal_positional_encoding(T: int, D: int, itemsize: int) -> Cost:
    """The (T, D) table: written once, nothing read; one sin or cos per element (counted as 1
    FLOP)."""
    return Cost(float(T * D), float(T * D * itemsize), "memory")


def matmul(M: int, N: int, K: int, itemsize: int) -> Cost:
    """(M, K) @ (K, N): 2 M N K FLOPs; the compute peak's probe."""
    return Cost(2.0 * M * N * K, float((M * K + K * N + M * N) * itemsize), "compute")


def copy(n_bytes: int) -> Cost:
    """A device-to-device copy of n bytes: n read plus n written; the bandwidth peak's probe."""
    return Cost(0.0, 2.0 * n_bytes, "memory")
