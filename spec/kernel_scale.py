"""Kernel scale: attention at the lengths production kernels run, 512 to 16384 (and decoding steps
over up to 16384 keys): scaled_dot_product_attention, and variant_attention and attention_lse with
the variants kernels implement (grouped heads, windows, soft-caps, ALiBi, sinks).

Run by the ``kernel`` profile only (``--profile kernel``, ``HYPOTHESIS_PROFILE=kernel`` or
``--scale production``): each case below is a variant of the property ``matches_streaming_oracle``
(kind "kernel"), in float32, bfloat16 and float16, on whatever adapter is named. Lengths include the
odd and one-past-a-power-of-two ones where tiled kernels keep their bugs (the last partial key
block, a causal boundary inside a block); both causal alignments, each where it leaves no row
empty (a row that sees no key is the default suite's business: its convention differs between
libraries and is declared there); a key-padding mask; head dims 64 to 256.

The tolerance policy at this scale, derived as spec/tolerance.py's, with the two evaluations that
cannot run on a (T, S) intermediate of 16384^2 replaced by equivalents that can:

    expected = reference.streaming.streaming_attention in float64 (block by block over keys, exact
               rescaling; equal to the plain reference, tests/meta/test_streaming.py)
    same     = two evaluations in the test dtype, every operation rounded as reference.attention
               rounds it: rounded_attention (the plain reference, its sums over keys in BLAS's
               order; equal to the plain reference where both run, tests/meta/test_kernel_scale.py)
               and sequential_attention_rows (the same with the sums over keys left to right, the
               least accurate order a correct kernel uses, on SEQUENTIAL_ROWS query rows)
    allowed  = MULTIPLIER * max(max|same - expected|) + FLOOR_ULPS * u(d) * max|expected|

Both same-precision terms grow with S as rounding in that order does: left to right like sqrt(S)
rounding units, which at S = 16384 is what separates correct kernels (torch's CPU kernel in float32,
decoding one query over 16384 keys, is 3-4x the BLAS order's error) from the BLAS order. Every case
has at least 256 outputs (T x Kv x B x H), so their maxima are no lucky draw; the floor is the
rounding of the output itself. In float16 and bfloat16 the roundings to the dtype dominate either
order.
spec/tolerance.py's floor scale max|v| (1 + L) would not do here: it bounds every weight's rounding
at once, and at S = 16384 the context is an average of thousands of values, a hundred
times smaller than max|v| (1 + L), so that floor would pass a kernel whose output is noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

from reference.streaming import rounded_attention, streaming_attention
from reference.variants import alibi_slopes
from spec.attention import SCALED_DOT_PRODUCT_ATTENTION
from spec.core import Subject, Unsupported, prop
from spec.dtypes import BFLOAT16, FLOAT16, FLOAT32, FLOAT64
from spec.strategies import make_values, seeds
from spec.tolerance import FLOOR_ULPS, MULTIPLIER, Bound, compare
from spec.variants import ATTENTION_LSE, VARIANT_ATTENTION


@dataclass(frozen=True)
class Scale:
    """One kernel-scale case: lengths, head dim, heads x batch, and the masking."""

    T: int
    S: int
    K: int = 128
    B: int = 1
    H: int = 1
    causal: str | None = None
    padding: bool = False  # a key-padding mask hides a drawn tail of the keys of each item
    # variant_attention / attention_lse only (reference/variants.py)
    Hkv: int | None = None  # key/value heads (grouped-query attention); None: H
    window: tuple[int, int] | None = None
    align: str = "bottom_right"  # of the window and ALiBi's distances
    softcap: float | None = None
    alibi: bool = False  # Press et al.'s slopes for H heads
    sinks: bool = False  # one drawn sink logit per query head

    @property
    def is_variant(self) -> bool:
        plain = Scale(self.T, self.S, self.K, self.B, self.H, self.causal, self.padding)
        return self != plain

    def __str__(self) -> str:
        name = f"T{self.T}xS{self.S}xK{self.K}"
        if self.B * self.H > 1:
            name += f"xB{self.B}H{self.H}"
        if self.Hkv is not None:
            name += f"kv{self.Hkv}"
        if self.causal:
            name += f"+causal_{self.causal}"
        if self.window is not None:
            name += f"+window{self.window[0]}_{self.window[1]}"
            name += "_top_left" if self.align == "top_left" else ""
        if self.softcap is not None:
            name += f"+softcap{self.softcap:g}"
        name += "+alibi" if self.alibi else ""
        name += "+sinks" if self.sinks else ""
        return name + ("+padding" if self.padding else "")


# Causal top-left only where T >= S and bottom-right only where T <= S: the other pairings leave
# rows that see no key (T > S bottom-right) or mean the same thing (T = S).
CASES = (
    Scale(512, 512, K=256, B=2, H=2),
    Scale(1023, 1025, K=80, causal="bottom_right"),  # T < S: the diagonal crosses the key blocks
    Scale(1025, 1023, K=96, causal="top_left"),  # T > S
    Scale(1, 16384, padding=True, B=2),  # a decoding step over a long, padded cache
    Scale(2049, 2047, K=64, padding=True),
    Scale(4097, 4096, causal="top_left"),
    Scale(8191, 8193, K=160, causal="bottom_right"),
    Scale(16384, 16384),
    Scale(16384, 16384, causal="top_left"),
)
# The variants at the same lengths (issue 16: kernel scale applies to every variant), each where
# no row is left without a key: grouped heads in a causal prefill and in decoding over a long padded
# cache; sliding windows whose edges cross the key blocks, in both alignments (top-left with T != S
# is jax's); a soft-cap small enough that most logits are capped (Gemma 2's local layers); ALiBi at
# distances past a thousand, also with a head count that is not a power of two; sinks with a
# sliding window (gpt-oss); and a decoding step with all of them but sinks.
VARIANT_CASES = (
    Scale(2047, 2049, H=8, Hkv=2, causal="bottom_right"),
    Scale(1, 16384, B=2, H=8, Hkv=1, padding=True),
    Scale(3001, 3001, K=64, H=2, window=(512, 0)),
    Scale(1025, 4097, K=96, window=(255, 256)),
    Scale(1023, 2049, K=64, window=(127, 127), align="top_left"),
    Scale(4097, 4096, H=2, softcap=2.0, causal="top_left"),
    Scale(4096, 4096, K=64, H=4, alibi=True, causal="bottom_right"),
    Scale(1023, 2049, K=80, H=6, alibi=True),
    Scale(2048, 2048, H=4, Hkv=2, sinks=True, window=(127, 0)),
    Scale(1, 8193, B=2, H=8, Hkv=2, softcap=5.0, alibi=True, window=(4095, 0)),
)
LSE_CASES = tuple(c for c in VARIANT_CASES if not c.sinks)
KERNEL_DTYPES = (FLOAT32, BFLOAT16, FLOAT16)
# Logits of standard deviation ~1 (q, k ~ N(0, 1) at scale 1/sqrt(K)) spread a row's weight over
# thousands of keys; x4 concentrates it on a few, as trained models' attention does.
SHARPNESS = (1.0, 4.0)


def kernel_inputs(data: st.DataObject, dtype: Any, case: Scale) -> dict[str, Any]:
    """q (B, H, T, K), k (B, H, S, K), v (B, H, S, K) in dtype, a sharpness, and the case's
    masking."""
    sharp = data.draw(st.sampled_from(SHARPNESS), label="sharpness")
    seed = data.draw(seeds(), label="seed")
    B, H, T, S, K = case.B, case.H, case.T, case.S, case.K
    Hkv = H if case.Hkv is None else case.Hkv
    q = make_values((B, H, T, K), "normal", seed, dtype)
    q = (q.astype(np.float32) * np.float32(sharp)).astype(dtype.np_dtype)
    k = make_values((B, Hkv, S, K), "normal", seed + 1, dtype)
    v = make_values((B, Hkv, S, K), "normal", seed + 2, dtype)
    inputs: dict[str, Any] = {"q": q, "k": k, "v": v, "causal": case.causal}
    if case.padding:  # item b keeps its first lengths[b] keys: at least one, at most S - 1
        rng = np.random.default_rng(seed + 3)
        lengths = rng.integers(1, S, B)
        inputs["mask"] = (np.arange(S) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    if case.is_variant:
        inputs.update(window=case.window, align=case.align, softcap=case.softcap)
        inputs["alibi_slopes"] = alibi_slopes(H).astype(dtype.np_dtype) if case.alibi else None
        # sink logits around a row's log-sum-exp (~log S, more with sharper rows), from well below
        # it to above it: the sink's share of the denominator runs from ~0 to most of it
        sinks = 3 * make_values((H,), "normal", seed + 4, FLOAT64) + np.log(S)
        inputs["sinks"] = sinks.astype(dtype.np_dtype) if case.sinks else None
    return inputs


VARIANT_ARGS = ("window", "align", "softcap", "alibi_slopes", "sinks")


# query rows the left-to-right summation order is measured on: enough outputs (x Kv x B x H) for
# its max error to be no lucky draw, few enough to cost a fraction of the oracle
SEQUENTIAL_ROWS = 16


def kernel_bound(
    inputs: dict[str, Any], dtype: Any, expected: np.ndarray, output: str = "context"
) -> Bound:
    """The policy's allowed max-abs error at kernel scale (the module docstring), of the context or
    (output="lse") of the log-sum-exp."""
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    mask, causal = inputs.get("mask"), inputs.get("causal")
    variants = {a: inputs[a] for a in VARIANT_ARGS if a in inputs}
    pick = 0 if output == "context" else 1
    same = rounded_attention(q, k, v, mask, None, causal, **variants)[pick]
    finite = np.isfinite(expected)
    same_err = float(np.abs(same.astype(np.float64) - expected)[finite].max(initial=0))
    T = q.shape[2]
    rows = np.unique(np.linspace(0, T - 1, min(T, SEQUENTIAL_ROWS)).round().astype(int))
    in_order = rounded_attention(  # (B, H, r, .)
        q, k, v, mask, None, causal, rows=rows, left_to_right=True, **variants
    )[pick]
    want = expected[:, :, rows]
    same_err = max(
        same_err,
        float(np.abs(in_order.astype(np.float64) - want)[np.isfinite(want)].max(initial=0)),
    )
    floor = FLOOR_ULPS * dtype.unit_roundoff * float(np.abs(expected[finite]).max(initial=0))
    return Bound(MULTIPLIER * same_err + floor, same_err, floor, dtype.name)


@prop(SCALED_DOT_PRODUCT_ATTENTION, variants=CASES, dtypes=KERNEL_DTYPES, kind="kernel")
def matches_streaming_oracle(subject: Subject, data: st.DataObject, variant: Scale) -> None:
    """At production lengths the adapter agrees with the streaming float64 oracle within the
    policy's bound, the same-precision term measured by the reference's own rounding at that
    length."""
    _matches_streaming(subject, data, variant, "context")


@prop(
    VARIANT_ATTENTION,
    variants=VARIANT_CASES,
    dtypes=KERNEL_DTYPES,
    kind="kernel",
    name="matches_streaming_oracle",
)
def variant_matches_streaming_oracle(subject: Subject, data: st.DataObject, variant: Scale) -> None:
    """With grouped heads, windows, soft-caps, ALiBi and sinks at production lengths the adapter
    agrees with the streaming float64 oracle within the policy's bound (as for
    scaled_dot_product_attention)."""
    _matches_streaming(subject, data, variant, "context")


@prop(
    ATTENTION_LSE,
    variants=LSE_CASES,
    dtypes=KERNEL_DTYPES,
    kind="kernel",
    name="matches_streaming_oracle",
)
def lse_matches_streaming_oracle(subject: Subject, data: st.DataObject, variant: Scale) -> None:
    """Each row's log-sum-exp at production lengths, with every variant but sinks, agrees with the
    streaming float64 oracle's within the policy's bound (the same-precision term is the reference's
    log-sum-exp evaluated in the dtype, its sums over keys in both orders)."""
    _matches_streaming(subject, data, variant, "lse")


def _matches_streaming(subject: Subject, data: st.DataObject, case: Scale, output: str) -> None:
    inputs = kernel_inputs(data, subject.dtype, case)
    called = inputs
    if output == "lse":  # attention_lse takes neither v nor sinks
        called = {k: v for k, v in inputs.items() if k not in ("v", "sinks")}
    oracle: list[np.ndarray] = []

    def expected() -> np.ndarray:  # evaluated once the adapter has returned
        wide = {k: v.astype(np.float64) for k, v in inputs.items() if k in ("q", "k", "v")}
        rest = {k: v for k, v in inputs.items() if k not in ("q", "k", "v")}
        context, _, lse = streaming_attention(**wide, **rest)  # (B, Hq, T, Kv), (B, Hq, T)
        oracle.append(context if output == "context" else lse)
        return oracle[0]

    try:
        got = subject.call(called, expected)
    except Unsupported as e:  # a case fixes every shape and variant: only values are drawn, and
        # no adapter's support depends on them, so one refusal is the test's verdict (not 459)
        raise Unsupported(str(e), everywhere=True) from e
    bound = kernel_bound(inputs, subject.dtype, oracle[0], output)
    shapes = f"q {inputs['q'].shape}, k {inputs['k'].shape}"
    what = "context" if output == "context" else "log-sum-exp"
    subject.check(compare(got, oracle[0], bound, f"{what} at {shapes}"), inputs)
