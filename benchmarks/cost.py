"""FLOP and bytes-moved models, one function per benchmarked component, named like the component.

Each returns a Cost: the work the component must do (FLOPs) and the bytes it must move at least
(read every input once, write every output once: the traffic of a fused kernel). Whether it is
compute- or memory-bound decides which measured peak its throughput is compared with.
Shape legend: B batch, H heads, T query length, S key length, K head dim, D model dim, R rows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    flops: float
    bytes: float
    # "compute": report TFLOP/s against the matmul peak; "memory": GB/s against the copy peak
    bound: str


def attended_pairs(T: int, S: int, causal: bool) -> int:
    """How many (query, key) pairs a query attends: T S, or under top-left causality sum_i min(i +
    1, S)."""
    if not causal:
        return T * S
    full = max(T - S, 0)  # rows i >= S - 1 see all S keys
    tri = T - full  # rows 0..tri-1 see i + 1 keys
    return tri * (tri + 1) // 2 + full * S


def scaled_dot_product_attention(
    B: int, H: int, T: int, S: int, K: int, itemsize: int, causal: bool
) -> Cost:
    """softmax(Q K^T / sqrt(K)) V: 2 K FLOPs per pair for Q K^T and 2 K for P V, so 4 B H T S K
    (FlashAttention's count; the softmax's exp and sums are not counted). Causal: only the attended
    pairs, about half. Bytes: q, k, v read and the output written once, B H (2 T + 2 S) K items."""
    return Cost(
        4.0 * B * H * K * attended_pairs(T, S, causal),
        float(B * H * (2 * T + 2 * S) * K * itemsize),
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
