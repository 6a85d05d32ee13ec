"""The sweeps: which component runs at which shapes and dtypes on which device.

A Case is one (component, device, dtype, shape, causal) point; the backends (benchmarks/backends.py)
that support it are the other axis. The CPU sweep is small enough for a 2-core machine (a few
minutes); the GPU sweep is the issue's: T = S from 512 to 16k, head dims 64 and 128, causal and not,
bf16 and fp16, with B H T fixed as in FlashAttention's benchmarks (B = 16k / T, H = 2048 / K) so
each point does the same work per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ml_dtypes
import numpy as np

from benchmarks import cost
from reference.masks import causal_mask

ATTENTION = "scaled_dot_product_attention"
MEMORY_BOUND = ("softmax", "layer_norm", "sinusoidal_positional_encoding")
DTYPES = {
    "float32": np.dtype(np.float32),
    "float16": np.dtype(np.float16),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
}


@dataclass(frozen=True)
class Case:
    """One benchmark point. ``dims`` names the component's sizes (shape legend in
    spec/shapes.py)."""

    component: str
    device: str
    dtype: str
    dims: tuple[tuple[str, int], ...]
    causal: bool = False

    @property
    def size(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def id(self) -> str:
        dims = "-".join(f"{k}{v}" for k, v in self.dims)
        return f"{self.component}-{self.device}-{self.dtype}-{dims}" + (
            "-causal" if self.causal else ""
        )

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    def cost(self) -> cost.Cost:
        n = self.size
        if self.component == ATTENTION:
            return cost.scaled_dot_product_attention(
                n["B"], n["H"], n["T"], n["S"], n["K"], self.itemsize, self.causal
            )
        if self.component == "softmax":
            return cost.softmax(n["R"], n["N"], self.itemsize)
        if self.component == "layer_norm":
            return cost.layer_norm(n["R"], n["D"], self.itemsize)
        if self.component == "sinusoidal_positional_encoding":
            return cost.sinusoidal_positional_encoding(n["T"], n["D"], self.itemsize)
        if self.component == "matmul":
            return cost.matmul(n["M"], n["N"], n["K"], self.itemsize)
        if self.component == "copy":
            return cost.copy(n["N"] * self.itemsize)
        raise ValueError(f"no cost model for component {self.component!r}")

    def inputs(self, seed: int = 0) -> dict[str, Any]:
        """The canonical inputs (spec layouts), drawn in float32 and rounded to the case's dtype."""
        rng, n, dt = np.random.default_rng(seed), self.size, DTYPES[self.dtype]
        draw = lambda *shape: rng.standard_normal(shape, dtype=np.float32).astype(dt)
        if self.component == ATTENTION:
            B, H, T, S, K = n["B"], n["H"], n["T"], n["S"], n["K"]
            return {"q": draw(B, H, T, K), "k": draw(B, H, S, K), "v": draw(B, H, S, K)}
        if self.component == "softmax":
            return {"x": draw(n["R"], n["N"])}
        if self.component == "layer_norm":
            return {
                "x": draw(n["R"], n["D"]),
                "gamma": draw(n["D"]),
                "beta": draw(n["D"]),
                "eps": 1e-5,
            }
        if self.component == "sinusoidal_positional_encoding":
            return {"T": n["T"], "D": n["D"], "dtype": self.dtype}
        if self.component == "matmul":
            return {"a": draw(n["M"], n["K"]), "b": draw(n["K"], n["N"])}
        if self.component == "copy":
            return {"x": draw(n["N"])}
        raise ValueError(f"no inputs for component {self.component!r}")

    def spot_check(
        self, inputs: dict[str, Any], got: np.ndarray, rows: int = 16
    ) -> tuple[dict[str, Any], np.ndarray]:
        """A small slice of the inputs the oracle can afford at any size, and the matching slice of
        ``got``.

        Attention: batch 0, head 0, the first and last ``rows`` queries against every key (with
        their rows of the causal mask); row-wise components: the first and last ``rows`` rows.
        """
        if self.component == ATTENTION:
            T, S = self.size["T"], self.size["S"]
            idx = np.unique(np.r_[np.arange(min(rows, T)), np.arange(max(T - rows, 0), T)])
            sub = {
                "q": inputs["q"][:1, :1, idx],
                "k": inputs["k"][:1, :1],
                "v": inputs["v"][:1, :1],
            }  # (1, 1, r, K)...
            if self.causal:
                sub["mask"] = causal_mask(T, S, "top_left")[
                    idx
                ]  # (r, S): the selected queries' rows
            return sub, got[:1, :1, idx]
        if self.component == "sinusoidal_positional_encoding":
            return dict(inputs), got
        R = got.shape[0]
        idx = np.unique(np.r_[np.arange(min(rows, R)), np.arange(max(R - rows, 0), R)])
        sub = {k: (v[idx] if k == "x" else v) for k, v in inputs.items()}
        return sub, got[idx]


def _attention(
    device: str,
    dtypes: tuple[str, ...],
    lengths: tuple[int, ...],
    head_dims: tuple[int, ...],
    tokens: int,
    width: int,
) -> list[Case]:
    return [
        Case(
            ATTENTION,
            device,
            dt,
            (("B", max(tokens // T, 1)), ("H", width // K), ("T", T), ("S", T), ("K", K)),
            causal,
        )
        for dt in dtypes
        for K in head_dims
        for causal in (False, True)
        for T in lengths
    ]


def _memory_bound(device: str, dtype: str, rows: tuple[int, ...], width: int) -> list[Case]:
    return [
        *(Case("softmax", device, dtype, (("R", R), ("N", width))) for R in rows),
        *(Case("layer_norm", device, dtype, (("R", R), ("D", width))) for R in rows),
        *(
            Case("sinusoidal_positional_encoding", device, dtype, (("T", R), ("D", width)))
            for R in rows
        ),
    ]


def cpu_sweep() -> list[Case]:
    """A few minutes on 2 cores: float32 attention to T = 2048, memory-bound ops to 64M elements."""
    return [
        *_attention(
            "cpu",
            ("float32",),
            (128, 256, 512, 1023, 1024, 1025, 2048),
            (64,),
            tokens=2048,
            width=256,
        ),
        *_memory_bound(
            "cpu", "float32", (1024, 4096, 16384, 65536), width=1024
        ),  # to 256 MB: past the caches
    ]


def gpu_sweep() -> list[Case]:
    """The issue's sweep: T = S in 512..16k with odd lengths, K in {64, 128}, causal and not, bf16
    and fp16."""
    # powers of two and their odd neighbours (a partial last tile, one past a specialisation)
    lengths = (512, 1023, 1024, 1025, 2048, 4096, 4097, 8192, 16383, 16384)
    return [
        *_attention("cuda", ("bfloat16", "float16"), lengths, (64, 128), tokens=16384, width=2048),
        *_memory_bound("cuda", "bfloat16", (4096, 16384, 65536, 262144), width=4096),
    ]


def peak_cases(device: str) -> list[Case]:
    """The probes of the measured peaks: a large matmul per dtype, a large device-to-device copy."""
    if device == "cpu":
        return [
            Case("matmul", "cpu", "float32", (("M", 2048), ("N", 2048), ("K", 2048))),
            Case("copy", "cpu", "float32", (("N", 2**26),)),
        ]
    n = 8192
    return [
        *(
            Case("matmul", "cuda", dt, (("M", n), ("N", n), ("K", n)))
            for dt in ("bfloat16", "float16", "float32")
        ),
        Case("copy", "cuda", "float32", (("N", 2**29),)),
    ]
