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
from reference.variants import window_allowed

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
    # The variants kernels implement today (spec/variants.py), attention with T = S only: key/value
    # heads (grouped-query attention, Hkv < H), a sliding window (window=(window, 0): each query
    # sees itself and the `window` keys before it) and a logit soft-cap.
    kv_heads: int | None = None
    window: int | None = None
    softcap: float | None = None

    @property
    def size(self) -> dict[str, int]:
        return dict(self.dims)

    @property
    def variants(self) -> frozenset[str]:
        """Which of "gqa", "window", "softcap" this point uses (empty: plain attention)."""
        on = {"gqa": self.kv_heads, "window": self.window, "softcap": self.softcap}
        return frozenset(name for name, value in on.items() if value is not None)

    @property
    def variant(self) -> str:
        """The id's variant part: "gqa4" (4 query heads per key/value head), "window256",
        "softcap50"; "" for plain attention."""
        parts = []
        if self.kv_heads is not None:
            parts.append(f"gqa{self.size['H'] // self.kv_heads}")
        if self.window is not None:
            parts.append(f"window{self.window}")
        if self.softcap is not None:
            parts.append(f"softcap{self.softcap:g}")
        return "+".join(parts)

    @property
    def id(self) -> str:
        dims = "-".join(f"{k}{v}" for k, v in self.dims)
        return (
            f"{self.component}-{self.device}-{self.dtype}-{dims}"
            + ("-causal" if self.causal else "")
            + (f"-{self.variant}" if self.variant else "")
        )

    def reference_args(self) -> dict[str, Any]:
        """The spec's arguments for this point's attention variant (variant_attention's)."""
        args: dict[str, Any] = {"causal": "top_left" if self.causal else None}
        if self.window is not None:
            args["window"], args["align"] = (self.window, 0), "top_left"
        if self.softcap is not None:
            args["softcap"] = self.softcap
        return args

    @property
    def itemsize(self) -> int:
        return DTYPES[self.dtype].itemsize

    def cost(self) -> cost.Cost:
        n = self.size
        if self.component == ATTENTION:
            return cost.scaled_dot_product_attention(
                n["B"],
                n["H"],
                n["T"],
                n["S"],
                n["K"],
                self.itemsize,
                self.causal,
                self.kv_heads,
                self.window,
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
            Hkv = H if self.kv_heads is None else self.kv_heads
            return {"q": draw(B, H, T, K), "k": draw(B, Hkv, S, K), "v": draw(B, Hkv, S, K)}
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
            # the selected queries' rows of the causal and window masks, (r, S): which keys a query
            # sees depends on its position in the whole sequence, not in the slice
            allowed = np.ones((T, S), dtype=bool)
            if self.causal:
                allowed &= causal_mask(T, S, "top_left")
            if self.window is not None:
                allowed &= window_allowed(T, S, (self.window, 0), "top_left")
            if self.causal or self.window is not None:
                sub["mask"] = allowed[idx]  # (r, S)
            if self.softcap is not None:
                sub["softcap"] = self.softcap
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


def _variants(
    device: str, dtype: str, lengths: tuple[int, ...], K: int, tokens: int, width: int, window: int
) -> list[Case]:
    """Grouped-query attention (4 query heads per key/value head, or one shared: multi-query when
    there are 4 heads), not causal and causal; a causal sliding window; a causal soft-cap of 50
    (Gemma 2's). B T and H K fixed as in the plain sweep, so the points compare with its."""
    H = width // K
    base = lambda T: (("B", max(tokens // T, 1)), ("H", H), ("T", T), ("S", T), ("K", K))
    return [
        *(
            Case(ATTENTION, device, dtype, base(T), causal, kv_heads=max(H // 4, 1))
            for causal in (False, True)
            for T in lengths
        ),
        *(Case(ATTENTION, device, dtype, base(T), True, window=window) for T in lengths),
        *(Case(ATTENTION, device, dtype, base(T), True, softcap=50.0) for T in lengths),
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
    """A few minutes on 2 cores: float32 attention to T = 2048 (and its variants: grouped heads, a
    window of 256, a soft-cap), memory-bound ops to 64M elements."""
    return [
        *_attention(
            "cpu",
            ("float32",),
            (128, 256, 512, 1023, 1024, 1025, 2048),
            (64,),
            tokens=2048,
            width=256,
        ),
        *_variants("cpu", "float32", (512, 1024, 2048), 64, tokens=2048, width=256, window=256),
        *_memory_bound(
            "cpu", "float32", (1024, 4096, 16384, 65536), width=1024
        ),  # to 256 MB: past the caches
    ]


def gpu_sweep() -> list[Case]:
    """The issue's sweep: T = S in 512..16k with odd lengths, K in {64, 128}, causal and not, bf16
    and fp16; the variants at K = 128 in bf16 (grouped heads, a window of 4096 as Mistral's, a
    soft-cap)."""
    # powers of two and their odd neighbours (a partial last tile, one past a specialisation)
    lengths = (512, 1023, 1024, 1025, 2048, 4096, 4097, 8192, 16383, 16384)
    return [
        *_attention("cuda", ("bfloat16", "float16"), lengths, (64, 128), tokens=16384, width=2048),
        *_variants(
            "cuda", "bfloat16", (1024, 4096, 16384), 128, tokens=16384, width=2048, window=4096
        ),
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
