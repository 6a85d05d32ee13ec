"""The streaming float64 oracle's speed against this machine's float64 matmul throughput.

    python -m benchmarks.oracle_speed [--length 16384] [--head-dim 128] [--block 1024]

Times reference.streaming.streaming_attention at T = S = length, one head, float64 (its useful work:
the two matmuls, 4 T S K flops), and in the same run a float64 matmul of the same operand shapes
(a block of queries against a block of keys, the oracle's own inner product), and prints both
rates and their ratio. The target is the ratio >= 0.5: the oracle's exponentials, maxima and
rescaling cost no more than its matmuls.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from reference.streaming import streaming_attention


def matmul_rate(block: int, K: int, repeats: int = 5) -> float:
    """float64 GFLOP/s of (block x K) @ (K x block) then (block x block) @ (block x K), best of
    repeats."""
    rng = np.random.default_rng(0)
    a, b, c = (
        rng.standard_normal((block, K)),
        rng.standard_normal((K, block)),
        rng.standard_normal((block, K)),
    )
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        (a @ b) @ c
        best = min(best, time.perf_counter() - start)
    return 4 * block * block * K / best / 1e9


def oracle_rate(length: int, K: int, block: int) -> tuple[float, float]:
    """(seconds, GFLOP/s) of one streaming_attention over T = S = length, one head, float64."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((1, 1, length, K)) for _ in range(3))
    start = time.perf_counter()
    streaming_attention(q, k, v, block=block)
    seconds = time.perf_counter() - start
    return seconds, 4 * length * length * K / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--block", type=int, default=1024)
    args = parser.parse_args()
    peak = matmul_rate(args.block, args.head_dim)
    seconds, rate = oracle_rate(args.length, args.head_dim, args.block)
    print(
        json.dumps(
            {
                "T=S": args.length,
                "K": args.head_dim,
                "block": args.block,
                "oracle_seconds": round(seconds, 2),
                "oracle_gflops": round(rate, 2),
                "matmul_gflops": round(peak, 2),
                "ratio": round(rate / peak, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
