"""JAX adapter: jax.nn.softmax, jax.nn.dot_product_attention and flax's
MultiHeadDotProductAttention.

Every library call is jitted once per shape and dtype, and the shared jit caches are what bound
JAX's cost per example (the strategies draw shapes from a short list of buckets); compilations are
still most of it (README, "Cost of the default run").
jax.nn.dot_product_attention takes (B, T, H, K) and needs V's head dim equal to K: the adapter
transposes and zero-pads (exact: padded columns add 0 to every dot product and are sliced off).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping
from functools import cache, partial
from pathlib import Path
from typing import Any, cast, overload

import jax
import jax.numpy as jnp
import numpy as np

from adapters import Declared, Deviation, carried_over
from adapters.grouped_mha import JaxGroupedMHA
from adapters.jax_seq2seq import SEQ2SEQ_DEVIATIONS, JaxSeq2Seq
from adapters.jax_variants import JaxPacked, JaxVariants, packed_deviations, variant_deviations
from spec.core import Unsupported
from spec.grouped import CHECKS as GQA_CHECKS
from spec.grouped import VARIANT_IDS as GQA_VARIANTS
from spec.model import empty_source
from spec.stacks import has_empty_row

jax.config.update("jax_enable_x64", True)  # float64 inputs must stay float64

# A persistent compilation cache on disk, kept between runs: a shape compiled once is loaded, not
# recompiled, by the next run. TCS_JAX_CACHE="" turns it off.
#
# Every process that runs at once (pytest-xdist workers, a sweep's clones) gets a directory of its
# own, a "slot" it holds a file lock on for its lifetime; a later run takes a free slot again. Two
# designs were measured and dropped:
# - one directory shared unlocked: jax writes an entry in place, and another process reading it
#   half-written crashed in deserialize_executable (a segfault of an xdist worker, a cold CI run);
# - one directory shared under jax's lock (a size limit turns it on): every write then scans the
#   whole directory for eviction under a lock both processes wait on. At 17850 files (one and a half
#   seeds of the sweep) one scan took 0.27 s, so each new shape cost more as the run went on, and
#   py-spy found both sweep processes asleep in LockAcquisition._poll_until_acquired.
# A slot grown past _SLOT_BYTES is pruned once when it is taken: its oldest entries go.
_CACHE = os.environ.get("TCS_JAX_CACHE", os.path.join(tempfile.gettempdir(), "tcs-jax-cache"))
_SLOT_BYTES = 2 * 2**30
_SLOTS = 32
_slot_lock: Any = None  # held for the process's lifetime


def _prune(slot: Path, limit: int) -> None:
    """Remove the oldest entries (by modification time) until the slot holds at most limit / 2."""
    files = [(f.stat().st_mtime, f.stat().st_size, f) for f in slot.iterdir() if f.is_file()]
    total = sum(size for _, size, _ in files)
    if total <= limit:
        return
    for _, size, f in sorted(files, key=lambda t: t[0]):
        if total <= limit // 2:
            break
        if f.name != ".owner":
            f.unlink(missing_ok=True)
            total -= size


def _claim_slot(root: str) -> str | None:
    """A cache directory no other running process holds (None: every slot taken, or no filelock)."""
    global _slot_lock
    if importlib.util.find_spec("filelock") is None:
        return None
    from filelock import FileLock, Timeout

    for i in range(_SLOTS):
        slot = Path(root) / f"slot{i}"
        slot.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(slot / ".owner"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _slot_lock = lock
        _prune(slot, _SLOT_BYTES)
        return str(slot)
    return None


_SLOT = _claim_slot(_CACHE) if _CACHE else None
if _SLOT is not None:
    jax.config.update("jax_compilation_cache_dir", _SLOT)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

_softmax = jax.jit(jax.nn.softmax, static_argnames=("axis",))


def _spec_sdpa(q, k, v, bias, mask, scale, causal, implementation, window=None, residual=False):
    """jax.nn.dot_product_attention on the spec's layout: q, k, v (B, H, L, K) -> (B, H, T, Kv);
    with ``residual``, its log-sum-exp too, (B, H, T). ``window`` is its local_window_size.

    The layout ops (zero-padding V's head dim to K's, the (B, L, H, K) transposes, the bottom-right
    causal mask jax lacks) are exact, and they are traced with the library call into one program:
    run eagerly they were each a compilation per new shape (measured: 5 per call)."""
    K, Kv, T, S = q.shape[-1], v.shape[-1], q.shape[-2], k.shape[-2]
    if k.shape[-1] == K:  # jax needs V's head dim == K: zero-pad the narrower side (never q vs k)
        width = max(K, Kv)
        q, k, v = (jnp.pad(a, [(0, 0)] * 3 + [(0, width - a.shape[-1])]) for a in (q, k, v))
    q, k, v = (jnp.swapaxes(a, 1, 2) for a in (q, k, v))  # (B, L, H, K)
    if causal == "bottom_right":  # jax has only top-left causality built in
        below = _bottom_right(T, S)  # (T, S)
        mask = below if mask is None else mask & below
    out = jax.nn.dot_product_attention(
        q,
        k,
        v,
        bias=bias,
        mask=mask,
        scale=scale,
        is_causal=causal == "top_left",
        implementation=implementation,
        local_window_size=window,
        return_residual=residual,
    )  # (B, T, H, K), and (B, T, H) with residual
    if residual:
        out, lse = out
        return jnp.swapaxes(out, 1, 2)[..., :Kv], jnp.swapaxes(lse, 1, 2)  # (B, H, T, .), (B, H, T)
    return jnp.swapaxes(out, 1, 2)[..., :Kv]  # (B, H, T, Kv)


# scale is traced, not static: a new scale value must not cost a new compilation
_sdpa = jax.jit(_spec_sdpa, static_argnames=("causal", "implementation", "window", "residual"))


@cache
def _flax_mha(num_heads: int, D: int, dtype: str, causal: str | None) -> Any:
    """flax's MultiHeadDotProductAttention on the spec's canonical weights, jitted once per
    configuration: the weight reshapes and the causal mask are traced into the same program (eager,
    each was a compilation per new shape)."""
    import flax.linen as nn

    module = nn.MultiHeadDotProductAttention(
        num_heads=num_heads,
        qkv_features=D,
        out_features=D,
        use_bias=True,
        dtype=dtype,
        param_dtype=dtype,
        deterministic=True,
    )

    def apply(params, q, k, v, allowed):
        T, S = q.shape[1], k.shape[1]
        if causal is not None:
            c = jnp.tril(
                jnp.ones((T, S), dtype=bool), k=0 if causal == "top_left" else S - T
            )  # (T, S)
            allowed = c[None, None] if allowed is None else allowed & c
        flax_params = _flax_mha_params(params, D, num_heads)
        return module.apply({"params": flax_params}, q, k, v, mask=allowed)

    return jax.jit(apply)


def _flax_mha_params(
    params: Mapping[str, np.ndarray | jax.Array], D: int, H: int
) -> dict[str, Any]:
    """Canonical MHA weights as flax's: query/key/value kernels (D, H, K), out kernel (H, K, D);
    the canonical columns h*K:(h+1)*K are head h, which is what a (D, H, K) reshape gives."""
    K = D // H
    zeros = np.zeros(D, dtype=params["w_q"].dtype)
    flax_params = {
        name: {
            "kernel": params[f"w_{n}"].reshape(D, H, K),
            "bias": params.get(f"b_{n}", zeros).reshape(H, K),
        }
        for name, n in (("query", "q"), ("key", "k"), ("value", "v"))
    }
    flax_params["out"] = {
        "kernel": params["w_o"].reshape(H, K, D),
        "bias": params.get("b_o", zeros),
    }
    return flax_params


def _flax_mask(mask: np.ndarray | None, B: int, H: int, T: int, S: int) -> jax.Array | None:
    """A spec mask as flax's boolean (B, H, T, S) mask (True = may attend); additive masks only if 0
    / -inf."""
    if mask is None:
        return None
    if mask.dtype != np.bool_:
        finite = np.isfinite(mask.astype(np.float64))
        if (mask.astype(np.float64)[finite] != 0).any():
            raise Unsupported(
                "flax MultiHeadDotProductAttention takes no additive bias, only boolean masks"
            )
        mask = finite  # an additive mask of 0 / -inf is a boolean mask
    return jnp.asarray(np.broadcast_to(mask, (B, H, T, S)))  # (B, H, T, S)


# Signatures XLA on CPU failed to compile (float16 attention): run eagerly from then on.
_EAGER: set[tuple[Any, ...]] = set()


def _broadcasts(shape: tuple[int, ...], full: tuple[int, ...]) -> bool:
    try:
        return len(shape) <= len(full) and np.broadcast_shapes(shape, full) == full
    except ValueError:
        return False


def _bottom_right(T: int, S: int) -> jax.Array:
    return jnp.tril(jnp.ones((T, S), dtype=bool), k=S - T)  # (T, S): s <= t + S - T


FULLY_MASKED = (
    "jax.nn.dot_product_attention averages V uniformly over a fully masked row (finite "
    "fill value), where the spec returns 0"
)

# the same, as the named alternative it is: under --semantics fully_masked_row=uniform jax conforms
FULLY_MASKED_UNIFORM = Deviation(FULLY_MASKED, convention=("fully_masked_row", "uniform"))

NAN_BIAS = "a row of -inf bias gives NaN (the finite fill covers boolean masks only)"
SILENT_BROADCAST = "jax broadcasts a (T, 2) mask against S = 1 keys instead of refusing it"
FLOAT32_SOFTMAX = (
    "jax.nn.dot_product_attention casts the logits to float32 for the softmax, so float64 inputs "
    "get float32 "
    "accuracy (errors ~1e-7 against a float64 bound ~1e-14), in its gradients too"
)


@partial(jax.jit, static_argnums=(0, 1, 2, 3))
def positional_encoding_table(T: int, D: int, base: float, dtype: str) -> jax.Array:
    """The (T, D) sinusoidal table. Neither jax nor flax has one: user code with jnp, the angle
    formed in float64. Also what benchmarks/ times."""
    angle = jnp.arange(T, dtype=jnp.float64)[:, None] / base ** (
        jnp.arange(0, D, 2, dtype=jnp.float64) / D
    )  # (T, ceil(D/2))
    pe = (
        jnp.zeros((T, D), jnp.float64)
        .at[:, 0::2]
        .set(jnp.sin(angle))
        .at[:, 1::2]
        .set(jnp.cos(angle[:, : D // 2]))
    )
    return pe.astype(dtype)


FLOAT64_MIN_BIAS = Deviation(
    "a float64 additive mask holding finfo(float64).min becomes -inf in the float32 softmax, so a "
    "row of "
    "it is NaN: jax.nn.dot_product_attention(q, k, v, bias=np.full((1, 1, 1, 1), "
    "np.finfo(np.float64).min))",
    when=lambda i: (
        getattr(i.get("mask"), "dtype", None) == np.float64 and bool((i["mask"] < -3.4e38).any())
    ),
    trigger="a float64 mask entry below float32's range",
    concerns=("float64", "fully_masked_row"),
)


def _mean_dominates(inputs: Mapping[str, Any]) -> bool:
    """A row of x (+ sublayer_out) whose |mean| exceeds 10 standard deviations, a constant row
    included: where E[x^2] - E[x]^2 cancels."""
    x = np.asarray(inputs["x"], np.float64)
    if inputs.get("sublayer_out") is not None:
        x = x + np.asarray(inputs["sublayer_out"], np.float64)
    std = x.std(-1)
    return bool((np.abs(x.mean(-1)) > 10 * std).any())


FAST_VARIANCE = (
    "flax nn.LayerNorm's default use_fast_variance=True computes var = E[x^2] - E[x]^2, which "
    "cancels when "
    "|mean| >> std: float32, mean 1, std 3e-3, D 16 gives max error 1.4e-2 "
    "(6e-5 with use_fast_variance=False, torch 4.4e-5)"
)
FAST_VARIANCE_ROWS = Deviation(
    FAST_VARIANCE
    + "; float32 x = [2739.359, 2739.102, 2739.874, 2739.339] (mean 2739, std 0.28) normalises to "
    "[-18.7, -100.2, 144.1, -25.2] instead of [-0.21, -1.12, 1.62, -0.28]; a constant row's var "
    "comes out of the order of u mean^2 instead of 0, so its gradient is scaled by the wrong "
    "rsqrt(var + eps) (sweep seed 25: rows of 4836.04 at eps 0.1, <vjp, t> 2.44 for 15.6)",
    when=_mean_dominates,
    trigger="a row whose |mean| exceeds 10 standard deviations (a constant row included)",
)
# RMSNorm's eps and D, refused by the spec, accepted by flax nn.RMSNorm (flax 0.12.8)
FLAX_RMS_NORM_UNCHECKED = {
    "negative_eps": (
        "flax nn.RMSNorm accepts epsilon < 0 without a check: nn.RMSNorm(epsilon=-1e-6) returns "
        "finite values"
    ),
    "nan_eps": "flax nn.RMSNorm accepts epsilon = NaN without a check and returns NaN",
    "eps_zero_on_a_zero_row": (
        "flax nn.RMSNorm returns NaN (0/0) for a row of zeros at epsilon = 0 instead of refusing: "
        "nn.RMSNorm(epsilon=0.0).apply(params, jnp.zeros((1, 4)))"
    ),
    "empty_model_dim": "flax nn.RMSNorm normalises over D = 0 features: an empty (..., 0)",
}
# LayerNorm's eps and D, refused by the spec, accepted by flax nn.LayerNorm (flax 0.12.8)
FLAX_LAYER_NORM_UNCHECKED = {
    "negative_eps": "flax nn.LayerNorm accepts epsilon < 0 without a check: "
    "nn.LayerNorm(epsilon=-1e-5) returns finite values",
    "nan_eps": "flax nn.LayerNorm accepts epsilon = NaN without a check and returns NaN",
    "eps_zero_on_a_constant_row": (
        "flax nn.LayerNorm returns NaN (0/0) for a constant row at epsilon = 0 instead of "
        "refusing: "
        "nn.LayerNorm(epsilon=0.0).apply(params, jnp.ones((1, 4)))"
    ),
    "empty_model_dim": "flax nn.LayerNorm normalises over D = 0 features without a check and "
    "returns an empty (..., 0)",
}


def _stack_empty_row(mask: str) -> Deviation:
    return Deviation(
        "flax MultiHeadDotProductAttention averages V uniformly over a query row whose mask hides "
        "every key (a "
        "finite fill), where the spec's attention gives b_o: an item of key-padding length 0 (flax "
        "0.12.8)",
        when=lambda i: has_empty_row(i.get(mask)),
        trigger="a query row that sees no key",
        concerns=("fully_masked_row",),
    )


_RELEASE_BYTES = 2 * 2**30


def _resident_bytes() -> int:
    """This process's resident memory (Linux /proc; elsewhere unknown: infinite, so release)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 2**62


class JaxAdapter(JaxVariants, JaxPacked, JaxSeq2Seq, JaxGroupedMHA):
    name = "jax"
    # jax.nn.dot_product_attention's implementation: None lets jax choose (XLA on CPU);
    # adapters/kernel_backends.py pins "xla" or "cudnn"
    implementation: str | None = None

    def release(self) -> None:
        """Between components (the plugin calls it): once the process holds more than
        _RELEASE_BYTES, drop jax's in-memory compiled programs, which otherwise accumulate (one
        process over the whole suite grew past 10 GB and crashed a 23 GB machine). The persistent
        compilation cache on disk makes a program needed again a load, not a compilation."""
        if _resident_bytes() > _RELEASE_BYTES:
            jax.clear_caches()

    deviations: dict[str, Declared] = {
        **SEQ2SEQ_DEVIATIONS,
        **{f"{c}.*": _stack_empty_row("mask") for c in ("encoder_layer", "encoder")},
        **{
            f"{c}.*": _stack_empty_row("memory_mask")
            for c in ("decoder_layer", "decoder", "incremental_decoder")
        },
        **{
            f"{c}.refuses[negative_eps]": "flax nn.LayerNorm accepts a negative epsilon without a "
            "check (flax 0.12.8)"
            for c in (
                "encoder_layer",
                "decoder_layer",
                "encoder",
                "decoder",
                "incremental_decoder",
                "encoder_decoder",
            )
        },
        "encoder_decoder.*": Deviation(
            "an empty source (src_lengths 0) leaves rows that see no key in the encoder and in "
            "cross-attention, which "
            "flax MultiHeadDotProductAttention averages uniformly where the spec's attention gives "
            "b_o (see encoder_layer)",
            when=empty_source,
            trigger="a source of length 0",
            concerns=("fully_masked_row",),
        ),
        "encoder_decoder.refuses[negative_source_id]": "flax nn.Embed (jnp.take) wraps id -1 to "
        "the last row",
        "encoder_decoder.refuses[source_length_beyond_S]": (
            "no jax op checks the source lengths the key-padding mask is built from (arange(S) < "
            "length): a length "
            "beyond S masks nothing"
        ),
        "softmax.all_neg_inf_slice_is_zero": Deviation(
            "jax.nn.softmax returns NaN for a slice of only -inf",
            convention=("fully_masked_row", "nan"),
        ),
        "attention_weights.*": FLOAT64_MIN_BIAS,
        "scaled_dot_product_attention.*": FLOAT64_MIN_BIAS,
        "attention_weights.fully_masked_rows_are_zero": FULLY_MASKED_UNIFORM,
        "scaled_dot_product_attention.fully_masked_rows_are_zero": FULLY_MASKED_UNIFORM,
        "attention_weights.fully_masked_rows_are_zero[additive_empty_rows]": NAN_BIAS,
        "scaled_dot_product_attention.fully_masked_rows_are_zero[additive_empty_rows]": NAN_BIAS,
        # at float64 the float32 softmax shows too, also where the uniform profile makes the rows
        # without keys conform (the more specific @float64 key would otherwise hide NAN_BIAS)
        **{
            f"{c}.fully_masked_rows_are_zero{v}@float64": d
            for c in ("attention_weights", "scaled_dot_product_attention")
            for v, d in (
                ("", (FULLY_MASKED_UNIFORM, Deviation(FLOAT32_SOFTMAX))),
                ("[additive_empty_rows]", NAN_BIAS),
            )
        },
        "multi_head_attention.fully_masked_rows_are_zero": Deviation(
            "flax MultiHeadDotProductAttention averages V uniformly over a fully masked row",
            convention=("fully_masked_row", "uniform"),
        ),
        **{
            f"{c}.{p}@float64": FLOAT32_SOFTMAX
            for c, p in (
                ("attention_weights", "matches_reference"),
                ("attention_weights", "permutation_equivariant"),
                ("attention_weights", "weights_are_distributions"),
                ("scaled_dot_product_attention", "matches_reference"),
                ("scaled_dot_product_attention", "permutation_equivariant"),
                ("grouped_multi_head_attention", "matches_reference"),
                ("grouped_multi_head_attention", "repeated_kv_heads_are_multi_head"),
                ("grouped_multi_head_attention", "vjp_matches_finite_differences"),
                ("scaled_dot_product_attention", "context_is_weighted_sum"),
                ("scaled_dot_product_attention", "vjp_matches_finite_differences"),
            )
        },
        **{
            f"{c}.refuses[{b}]": "flax nn.Embed (jnp.take) returns NaN rows for id >= V and wraps "
            "id -1 to the last row"
            for c in ("token_embedding", "embed_with_positions")
            for b in ("token_id_equals_V", "negative_token_id")
        },
        "encoder_decoder.refuses[token_id_equals_V]": "flax nn.Embed (jnp.take) returns NaN rows "
        "for id >= V",
        **{
            f"{c}.matches_reference[small_variance]@{d}": FAST_VARIANCE
            for c in ("layer_norm", "add_and_norm")
            for d in ("float32", "float64")
        },
        **{f"{c}.*": FAST_VARIANCE_ROWS for c in ("layer_norm", "add_and_norm")},
        **{
            f"{c}.refuses[{b}]": why
            for c in ("layer_norm", "add_and_norm")
            for b, why in FLAX_LAYER_NORM_UNCHECKED.items()
        },
        **{f"rms_norm.refuses[{b}]": why for b, why in FLAX_RMS_NORM_UNCHECKED.items()},
        **{
            f"cross_entropy.refuses[{b}]": (
                "jax.nn.one_hot turns a target >= V or < 0 into a zero row, so the optax loss is "
                "silently logsumexp(logits)"
            )
            for b in ("target_out_of_range", "negative_target")
        },
        "cross_entropy.refuses[every_target_ignored]": "a mean over no positions: the loss is 0 / "
        "0 = NaN, unrefused",
        **{
            f"cross_entropy.refuses[{b}]": (
                "optax.smooth_labels(labels, alpha) checks no alpha: alpha = 1.5 puts -0.5 on the "
                "target class "
                "(optax.smooth_labels(jnp.eye(3), 1.5)[0] is [0, 0.5, 0.5]), -0.1 and NaN pass too"
            )
            for b in (
                "label_smoothing_above_one",
                "negative_label_smoothing",
                "nan_label_smoothing",
            )
        },
        "token_embedding.refuses[empty_tokens]": "flax nn.Embed accepts an empty id array and "
        "returns (B, 0, D)",
        "tied_output_logits.refuses[scalar_h]": (
            "flax nn.Embed.attend(h) is jnp.dot(h, E.T), which scales the table for a 0-D h: it "
            "returns (D, V) "
            "instead of refusing"
        ),
        "dropout.refuses[p_above_one]": "flax nn.Dropout accepts rate=1.5 without a check",
        "dropout.refuses[negative_p]": (
            "flax nn.Dropout accepts rate=-0.1 without a check and scales every entry by 1/1.1 in "
            "training: "
            "nn.Dropout(rate=-0.1).apply({}, jnp.ones(3), deterministic=False, rngs=...) is "
            "[0.909, 0.909, 0.909]"
        ),
        "dropout.refuses[nan_p]": "flax nn.Dropout accepts rate=NaN without a check and drops "
        "every entry in training",
        "attention_weights.refuses[nan_scale]": "jax.nn.dot_product_attention accepts scale=NaN "
        "and returns NaN",
        "scaled_dot_product_attention.refuses[nan_scale]": "jax.nn.dot_product_attention accepts "
        "scale=NaN and returns NaN",
        "attention_weights.refuses[empty_keys]": "accepts S = 0",
        "scaled_dot_product_attention.refuses[empty_keys]": "accepts S = 0",
        "attention_weights.refuses[mask_not_broadcastable]": SILENT_BROADCAST,
        "scaled_dot_product_attention.refuses[mask_not_broadcastable]": SILENT_BROADCAST,
    }
    deviations |= variant_deviations(FLOAT32_SOFTMAX, FULLY_MASKED_UNIFORM, SILENT_BROADCAST)
    deviations |= packed_deviations(FLOAT32_SOFTMAX, FULLY_MASKED)
    # local_window_size is a static argument: every window is a compilation of its own (~0.1-0.4 s)
    example_shares = {"variant_attention": 0.3, "attention_lse": 0.3, "packed_attention": 0.3}
    # grouped_query_attention is the same library call with fewer key/value heads
    deviations |= carried_over(
        deviations,
        "scaled_dot_product_attention",
        "grouped_query_attention",
        GQA_CHECKS,
        GQA_VARIANTS,
    )
    # grouped_multi_head_attention's attention is that call too: its whole-component declarations
    deviations |= carried_over(
        deviations, "scaled_dot_product_attention", "grouped_multi_head_attention", {"*"}, set()
    )

    def __init__(self, device: str = "cpu"):
        self.device = jax.devices("gpu" if device == "cuda" else device)[0]
        self._leaves: dict[int, jax.Array] | None = None  # set only while vjp() traces a component
        self._used: set[int] = set()
        self._output: jax.Array | None = None

    def vjp(
        self, component: str, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """jax.vjp of the component's own forward, traced with the inputs named in ``wrt`` as
        primals."""
        from spec.gradients import get_path

        arrays = [get_path(inputs, path) for path in wrt]

        def forward(*leaves: jax.Array) -> jax.Array:
            self._leaves, self._used, self._output = (
                {id(a): x for a, x in zip(arrays, leaves, strict=True)},
                set(),
                None,
            )
            try:
                getattr(self, component)(**inputs)
            finally:
                self._leaves = None
            unused = [p for p, a in zip(wrt, arrays, strict=True) if id(a) not in self._used]
            if self._output is None or unused:
                raise Unsupported(
                    f"jax adapter's {component} does not carry {unused or wrt} to its output "
                    "differentiably"
                )
            return self._output

        out, pullback = jax.vjp(forward, *(jax.device_put(a, self.device) for a in arrays))
        grads = pullback(jnp.asarray(cotangent, dtype=out.dtype))
        return {path: np.asarray(g) for path, g in zip(wrt, grads, strict=True)}

    def _np(self, x: jax.Array) -> np.ndarray:
        """The output back as NumPy; under vjp() it is recorded and a placeholder is returned."""
        if self._leaves is not None:
            self._output = x
            return np.zeros(x.shape, x.dtype)
        return np.asarray(x)

    def on_device(self, device: str) -> JaxAdapter:
        return JaxAdapter(device)

    @overload
    def _j(self, a: np.ndarray) -> jax.Array: ...
    @overload
    def _j(self, a: None) -> None: ...
    def _j(self, a: np.ndarray | None) -> jax.Array | None:
        if (
            self._leaves is not None and id(a) in self._leaves
        ):  # vjp(): this input is differentiated
            self._used.add(id(a))
            return self._leaves[id(a)]
        return None if a is None else jax.device_put(a, self.device)

    def softmax(self, x: np.ndarray, axis: int = -1) -> np.ndarray:
        return self._np(_softmax(self._j(x), axis=axis))

    def scaled_dot_product_attention(self, q, k, v, mask=None, scale=None, causal=None):
        return self._np(self._attend(q, k, v, mask, scale, causal))  # (B, H, T, Kv)

    def _attend(self, q, k, v, mask, scale, causal, window=None, residual=False, extra_bias=None):
        """jax.nn.dot_product_attention of spec inputs (window: its local_window_size; residual:
        the log-sum-exp too; extra_bias: (B, H, T, S) added to its bias), as jax arrays."""
        if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
            raise ValueError(
                f"expected 4-D (B, H, L, K) inputs; got {q.shape}, {k.shape}, {v.shape}"
            )
        K, T, S = q.shape[-1], q.shape[-2], k.shape[-2]
        scale = np.asarray(1.0 / np.sqrt(K) if scale is None else scale, dtype=q.dtype)
        q, k, v = self._j(q), self._j(k), self._j(v)
        bias = boolean = None
        if mask is not None:
            full = (q.shape[0], q.shape[1], T, S)  # (B, H, T, S): jax's mask layout is the spec's
            if mask.shape != full and _broadcasts(mask.shape, full):
                # JAX compiles one program per input shape: a mask of any of its broadcast layouts
                # given as the full (B, H, T, S) mask it stands for keeps that to one program per
                # shape (measured: 448 programs for 1000 examples otherwise). One that does not
                # broadcast goes in as it is, so jax's own handling of it is what is checked.
                mask = np.broadcast_to(mask, full)
            boolean, bias = (mask, None) if mask.dtype == np.bool_ else (None, mask)
        if extra_bias is not None:
            bias = extra_bias if bias is None else (bias + extra_bias).astype(extra_bias.dtype)
        args = (q, k, v, self._j(bias), self._j(boolean), scale, causal, self.implementation)
        signature: tuple[Any, ...] = (q.dtype, q.shape, k.shape, v.shape, boolean is None)
        signature += (bias is None, causal, window, residual)
        if signature not in _EAGER:
            try:
                return _sdpa(*args, window=window, residual=residual)
            except (ValueError, jax.errors.JaxRuntimeError) as e:
                # Found by this suite (jax 0.10.2): under jit, XLA on CPU cannot compile the float16
                # dot with float32 accumulation this op asks for (bfloat16 too, for tiny shapes);
                # run eagerly, the op catches that and falls back to the default precision, so the
                # adapter runs it eagerly there (and does not try to compile that signature again).
                if np.dtype(q.dtype).itemsize != 2 or "not supported" not in str(e):
                    raise
                _EAGER.add(signature)
        return _spec_sdpa(*args, window=window, residual=residual)

    def grouped_query_attention(self, q, k, v, mask=None, scale=None, causal=None):
        # jax.nn.dot_product_attention groups natively: k, v with fewer heads than q (it reshapes
        # the query heads to (Hkv, G)); jax checks the divisibility itself
        return self.scaled_dot_product_attention(q, k, v, mask=mask, scale=scale, causal=causal)

    def attention_weights(self, q, k, mask=None, scale=None, causal=None):
        # dot_product_attention(q, k, I) = softmax(...) I: jax's own kernel produces the weights.
        B, H, S = k.shape[0], k.shape[1], k.shape[2]
        eye = np.broadcast_to(np.eye(S, dtype=q.dtype), (B, H, S, S))  # (B, H, S, S)
        return self.scaled_dot_product_attention(q, k, eye, mask=mask, scale=scale, causal=causal)

    def multi_head_attention(
        self,
        query,
        key,
        value,
        params: Mapping[str, np.ndarray],
        num_heads: int,
        mask=None,
        causal=None,
    ):
        B, T, D = query.shape
        S = key.shape[1]
        if D % num_heads:
            raise ValueError(f"D={D} is not divisible by H={num_heads}")
        H = num_heads
        fn = _flax_mha(H, D, np.dtype(query.dtype).name, causal)
        params_j = {name: self._j(w) for name, w in params.items()}
        allowed = _flax_mask(mask, B, H, T, S)
        out = fn(params_j, self._j(query), self._j(key), self._j(value), allowed)
        return self._np(out)

    # --- embeddings -------------------------------------------------------------------------------
    def sinusoidal_positional_encoding(
        self, T: int, D: int, base: float = 10000.0, dtype: str = "float32"
    ) -> np.ndarray:
        if T < 1 or D < 1 or not (base > 1 and np.isfinite(base)):
            raise ValueError(f"need T >= 1, D >= 1, finite base > 1; got T={T}, D={D}, base={base}")
        if dtype not in (
            "float64",
            "float32",
            "float16",
            "bfloat16",
        ):  # astype would make an int table of 0s and 1s
            raise ValueError(f"dtype must name a floating dtype; got {dtype!r}")
        return np.asarray(positional_encoding_table(T, D, base, dtype))

    def token_embedding(self, tokens: np.ndarray, table: np.ndarray) -> np.ndarray:
        import flax.linen as nn

        embed = nn.Embed(table.shape[0], table.shape[1], dtype=table.dtype, param_dtype=table.dtype)
        out = embed.apply({"params": {"embedding": self._j(table)}}, self._j(tokens))
        return np.asarray(out * jnp.asarray(np.sqrt(table.shape[1]), dtype=table.dtype))

    def embed_with_positions(
        self, tokens: np.ndarray, table: np.ndarray, base: float = 10000.0
    ) -> np.ndarray:
        pe = self.sinusoidal_positional_encoding(
            tokens.shape[1], table.shape[1], base, table.dtype.name
        )
        return np.asarray(jnp.asarray(self.token_embedding(tokens, table)) + jnp.asarray(pe))

    def tied_output_logits(self, h: np.ndarray, table: np.ndarray) -> np.ndarray:
        import flax.linen as nn

        embed = nn.Embed(table.shape[0], table.shape[1], dtype=table.dtype, param_dtype=table.dtype)
        return np.asarray(
            embed.apply(
                {"params": {"embedding": self._j(table)}}, self._j(h), method=nn.Embed.attend
            )
        )

    # --- position-wise layers: flax modules -------------------------------------------------------
    def position_wise_ffn(
        self, x: np.ndarray, params: Mapping[str, np.ndarray], activation: str = "relu"
    ) -> np.ndarray:
        import flax.linen as nn

        acts: dict[str, Callable[[jax.Array], jax.Array]] = {
            "relu": jax.nn.relu,
            "gelu": partial(jax.nn.gelu, approximate=False),
            "gelu_tanh": partial(jax.nn.gelu, approximate=True),
        }
        act = acts[activation]
        D, F = params["w1"].shape
        if params["w2"].shape != (F, D):
            raise ValueError(f"w2 must be (F, D)=({F}, {D}); got {params['w2'].shape}")
        dense1, dense2 = (
            nn.Dense(F, dtype=x.dtype, param_dtype=x.dtype),
            nn.Dense(D, dtype=x.dtype, param_dtype=x.dtype),
        )
        # flax kernels are (in, out): the canonical layout as it is
        p = {name: self._j(w) for name, w in params.items()}
        # without mutable=, Module.apply returns the output alone (its type allows a tuple)
        h = act(
            cast(
                jax.Array,
                dense1.apply({"params": {"kernel": p["w1"], "bias": p["b1"]}}, self._j(x)),
            )
        )
        return self._np(
            cast(jax.Array, dense2.apply({"params": {"kernel": p["w2"], "bias": p["b2"]}}, h))
        )

    def layer_norm(
        self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float = 1e-5
    ) -> np.ndarray:
        import flax.linen as nn

        if gamma.shape != (x.shape[-1],) or beta.shape != (x.shape[-1],):
            raise ValueError(
                f"gamma, beta must be (D,)=({x.shape[-1]},); got {gamma.shape}, {beta.shape}"
            )
        ln = nn.LayerNorm(epsilon=eps, dtype=x.dtype, param_dtype=x.dtype)
        out = ln.apply({"params": {"scale": self._j(gamma), "bias": self._j(beta)}}, self._j(x))
        return self._np(cast(jax.Array, out))  # without mutable=, apply returns the output alone

    def rms_norm(self, x: np.ndarray, gamma: np.ndarray, eps: float = 1e-6) -> np.ndarray:
        import flax.linen as nn

        if gamma.shape != (x.shape[-1],):
            raise ValueError(f"gamma must be (D,)=({x.shape[-1]},); got {gamma.shape}")
        rms = nn.RMSNorm(epsilon=eps, dtype=x.dtype, param_dtype=x.dtype)
        out = rms.apply({"params": {"scale": self._j(gamma)}}, self._j(x))
        return self._np(cast(jax.Array, out))  # without mutable=, apply returns the output alone

    def add_and_norm(
        self,
        x: np.ndarray,
        sublayer_out: np.ndarray,
        gamma: np.ndarray,
        beta: np.ndarray,
        eps: float = 1e-5,
    ) -> np.ndarray:
        if sublayer_out.shape != x.shape:
            raise ValueError(f"sublayer_out must be {x.shape}; got {sublayer_out.shape}")
        return self.layer_norm(
            np.asarray(jnp.asarray(x) + jnp.asarray(sublayer_out)), gamma, beta, eps
        )

    def dropout(self, x: np.ndarray, p: float, training: bool = False, seed: int = 0) -> np.ndarray:
        import flax.linen as nn

        return np.asarray(
            nn.Dropout(rate=p).apply(
                {}, self._j(x), deterministic=not training, rngs={"dropout": jax.random.key(seed)}
            )
        )

    # --- teacher forcing and the loss: optax ------------------------------------------------------
    def shift_right(self, targets: np.ndarray, bos: int, pad: int) -> np.ndarray:
        # jax has no shift-right: user code with jnp
        t = jnp.asarray(targets)
        if t.ndim != 2 or t.shape[1] == 0 or not jnp.issubdtype(t.dtype, jnp.integer):
            raise ValueError(f"targets must be int ids (B, T) with T >= 1; got {t.dtype} {t.shape}")
        shifted = jnp.concatenate([jnp.full_like(t[:, :1], bos), t[:, :-1]], axis=1)  # (B, T)
        return np.asarray(jnp.where(t == pad, pad, shifted))

    def cross_entropy(
        self,
        logits: np.ndarray,
        targets: np.ndarray,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> np.ndarray:
        import optax

        if targets.shape != logits.shape[:-1]:
            raise ValueError(f"targets must be {logits.shape[:-1]}; got {targets.shape}")
        keep = jnp.asarray(targets != ignore_index)  # (...,)
        labels = jax.nn.one_hot(
            jnp.where(keep, jnp.asarray(targets), 0), logits.shape[-1], dtype=logits.dtype
        )  # (..., V)
        labels = optax.smooth_labels(labels, label_smoothing)  # (1 - eps) onehot + eps / V
        per_position = optax.softmax_cross_entropy(self._j(logits), labels)  # (...,)
        return self._np((jnp.where(keep, per_position, 0).sum() / keep.sum()).astype(logits.dtype))

    # --- encoder and decoder: flax modules composed (adapters/flax_stacks.py) ---------------------
    def _stack(
        self,
        x,
        memory,
        layers,
        num_heads,
        mask,
        norm_first,
        activation,
        eps,
        final_norm,
        cached=False,
    ):
        from adapters.flax_stacks import run_decoder_cached, run_stack

        B, T, D = x.shape
        S = T if memory is None else memory.shape[1]
        allowed = _flax_mask(mask, B, num_heads, T, S) if D % num_heads == 0 else None
        run = run_decoder_cached if cached else run_stack
        out = run(
            x,
            memory,
            list(layers),
            num_heads,
            allowed,
            norm_first,
            activation,
            eps,
            final_norm,
            _flax_mha_params,
            self._j,
        )
        return self._np(out)

    def encoder_layer(
        self, x, params, num_heads, mask=None, norm_first=False, activation="relu", eps=1e-5
    ):
        return self._stack(x, None, [params], num_heads, mask, norm_first, activation, eps, None)

    def decoder_layer(
        self,
        y,
        memory,
        params,
        num_heads,
        memory_mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
    ):
        return self._stack(
            y, memory, [params], num_heads, memory_mask, norm_first, activation, eps, None
        )

    def encoder(
        self,
        x,
        layers,
        num_heads,
        mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
        final_norm=None,
    ):
        return self._stack(
            x, None, layers, num_heads, mask, norm_first, activation, eps, final_norm
        )

    def decoder(
        self,
        y,
        memory,
        layers,
        num_heads,
        memory_mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
        final_norm=None,
    ):
        return self._stack(
            y, memory, layers, num_heads, memory_mask, norm_first, activation, eps, final_norm
        )

    def incremental_decoder(
        self,
        y,
        memory,
        layers,
        num_heads,
        memory_mask=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
        final_norm=None,
    ):
        # flax's own key/value cache: MultiHeadDotProductAttention(decode=True), one position per
        # call
        return self._stack(
            y,
            memory,
            layers,
            num_heads,
            memory_mask,
            norm_first,
            activation,
            eps,
            final_norm,
            cached=True,
        )

    def encoder_decoder(
        self,
        src_tokens,
        tgt_in,
        params,
        num_heads,
        src_lengths=None,
        norm_first=False,
        activation="relu",
        eps=1e-5,
    ):
        from adapters.compose import encoder_decoder_from

        log_softmax = lambda logits: np.asarray(jax.nn.log_softmax(jnp.asarray(logits), axis=-1))
        return encoder_decoder_from(
            self,
            log_softmax,
            src_tokens,
            tgt_in,
            params,
            num_heads,
            src_lengths,
            norm_first,
            activation,
            eps,
        )


adapter = JaxAdapter("cpu")
