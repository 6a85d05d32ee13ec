"""Encoder and decoder layers for the jax adapter, built from flax's own modules.

flax has no Transformer layer: these modules compose nn.MultiHeadDotProductAttention, nn.Dense and
nn.LayerNorm the way the paper wires them (post-LN or pre-LN), with flax's nn.make_causal_mask for
the decoder. The canonical parameters (reference/stacks.py) are mapped onto the module's tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from typing import Any, cast

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# flax nn.LayerNorm's default variance E[x^2] - E[x]^2 cancels where a row's mean dominates; the
# layer_norm component checks that default and declares it (adapters/jax_adapter.py FAST_VARIANCE).
# In the stacks it would bury the composition under that cancellation (a correct 3-layer pre-LN
# decoder at 0.99 of its float32 bound, 18x the reference's error; 1.5x with the two-pass
# variance), so they use flax's own two-pass option.
STACKS_FAST_VARIANCE = False

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": partial(jax.nn.gelu, approximate=False),
    "gelu_tanh": partial(jax.nn.gelu, approximate=True),
}


class Layer(nn.Module):
    """One encoder layer (memory None) or decoder layer."""

    num_heads: int
    width: int
    norm_first: bool
    activation: str
    eps: float
    decoder: bool
    dtype: Any
    features: int
    # decode=True: one position per call, self-attention keys/values kept in flax's own "cache"
    # collection (MultiHeadDotProductAttention(decode=True) appends them and masks the unfilled
    # tail)
    decode: bool = False

    def _attention(self, name: str, decode: bool = False) -> nn.Module:
        return nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dtype=self.dtype,
            param_dtype=self.dtype,
            deterministic=True,
            decode=decode,
            name=name,
        )

    def _residual(
        self, x: jax.Array, sublayer: Callable[[jax.Array], jax.Array], norm: str
    ) -> jax.Array:
        ln = nn.LayerNorm(
            epsilon=self.eps,
            dtype=self.dtype,
            param_dtype=self.dtype,
            name=norm,
            use_fast_variance=STACKS_FAST_VARIANCE,
        )
        return x + sublayer(ln(x)) if self.norm_first else ln(x + sublayer(x))

    def _ffn(self, h: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.dtype, name="ffn1")(h)
        return nn.Dense(self.features, dtype=self.dtype, param_dtype=self.dtype, name="ffn2")(
            ACTIVATIONS[self.activation](h)
        )

    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array | None, mask: jax.Array | None) -> jax.Array:
        if not self.decoder:
            x = self._residual(
                x, lambda h: self._attention("self_attn")(h, h, h, mask=mask), "norm1"
            )
            return self._residual(x, self._ffn, "norm2")
        causal = (
            None if self.decode else nn.make_causal_mask(x[..., 0])
        )  # (B, 1, T, T); the cache masks itself
        x = self._residual(
            x, lambda h: self._attention("self_attn", self.decode)(h, h, h, mask=causal), "norm1"
        )
        x = self._residual(
            x, lambda h: self._attention("cross_attn")(h, memory, memory, mask=mask), "norm2"
        )
        return self._residual(x, self._ffn, "norm3")


def flax_layer_params(
    params: Mapping[str, Any], D: int, H: int, mha_params: Callable[..., dict[str, Any]]
) -> dict[str, Any]:
    """Canonical layer params as the Layer module's parameter tree (flax Dense kernels are (in,
    out), as canonical)."""
    tree: dict[str, Any] = {"self_attn": mha_params(params["self_attn"], D, H)}
    if "cross_attn" in params:
        tree["cross_attn"] = mha_params(params["cross_attn"], D, H)
    ffn = params["ffn"]
    tree["ffn1"] = {"kernel": ffn["w1"], "bias": ffn["b1"]}
    tree["ffn2"] = {"kernel": ffn["w2"], "bias": ffn["b2"]}
    for i in (1, 2, 3):
        if f"norm{i}" in params:
            tree[f"norm{i}"] = {
                "scale": params[f"norm{i}"]["gamma"],
                "bias": params[f"norm{i}"]["beta"],
            }
    return tree


# eps is an argument of the jitted functions, not part of their cache key: every eps would otherwise
# cost a compilation. A Python float passed to jax.jit is traced weakly typed, so var + eps rounds
# in the variance's own dtype, as the static float does.
@cache
def _apply(
    num_heads: int, width: int, norm_first: bool, activation: str, decoder: bool, dtype: str, D: int
) -> Callable[..., Any]:
    def apply(
        params: Any, x: jax.Array, memory: jax.Array | None, mask: jax.Array | None, eps: float
    ) -> jax.Array:
        layer = Layer(num_heads, width, norm_first, activation, eps, decoder, dtype, D)
        # without mutable=, Module.apply returns the output alone (its type allows a tuple)
        return cast(jax.Array, layer.apply({"params": params}, x, memory, mask))

    return jax.jit(apply)


@cache
def _step(
    num_heads: int, width: int, norm_first: bool, activation: str, dtype: str, D: int
) -> Callable[..., Any]:
    """One decoding step of one decoder layer: (params, cache, x (B, 1, D), memory, mask, eps) ->
    (out, cache)."""

    def step(
        params: Any, cache: Any, x: jax.Array, memory: jax.Array, mask: jax.Array | None, eps: float
    ) -> Any:
        layer = Layer(num_heads, width, norm_first, activation, eps, True, dtype, D, decode=True)
        out, variables = layer.apply(
            {"params": params, "cache": cache}, x, memory, mask, mutable=["cache"]
        )
        return out, variables["cache"]

    return jax.jit(step)


def _empty_cache(B: int, T: int, D: int, H: int, dtype: Any) -> dict[str, Any]:
    """flax's self-attention cache before the first step: keys/values (B, T, H, K) of zeros, index
    0."""
    zeros = jnp.zeros((B, T, H, D // H), dtype)  # (B, T, H, K)
    return {
        "self_attn": {
            "cached_key": zeros,
            "cached_value": zeros,
            "cache_index": jnp.array(0, jnp.int32),
        }
    }


def _final_norm(h: jax.Array, final_norm: Mapping[str, np.ndarray] | None, eps: float) -> jax.Array:
    if final_norm is not None:
        ln = nn.LayerNorm(
            epsilon=eps, dtype=h.dtype, param_dtype=h.dtype, use_fast_variance=STACKS_FAST_VARIANCE
        )
        h = cast(  # without mutable=, Module.apply returns the output alone
            jax.Array,
            ln.apply({"params": {"scale": final_norm["gamma"], "bias": final_norm["beta"]}}, h),
        )
    return h


def run_stack(
    x: np.ndarray,
    memory: np.ndarray | None,
    layers: Sequence[Mapping[str, Any]],
    num_heads: int,
    mask: jax.Array | None,
    norm_first: bool,
    activation: str,
    eps: float,
    final_norm: Mapping[str, np.ndarray] | None,
    mha_params: Callable[..., dict[str, Any]],
    to_jax: Callable[[Any], jax.Array] = jnp.asarray,
) -> jax.Array:
    """Apply the layers one after another (then the optional final flax LayerNorm). ``to_jax``
    converts x and memory (the adapter's converter, so that vjp() can trace them)."""
    if not layers:  # the loop below would make an empty stack the identity
        raise ValueError("layers must hold at least one layer's params; got none")
    D = x.shape[-1]
    if D % num_heads:
        raise ValueError(f"D={D} is not divisible by H={num_heads}")
    h = to_jax(x)
    for params in layers:
        fn = _apply(
            num_heads,
            params["ffn"]["w1"].shape[1],
            norm_first,
            activation,
            memory is not None,
            np.dtype(x.dtype).name,
            D,
        )
        h = fn(
            flax_layer_params(params, D, num_heads, mha_params),
            h,
            None if memory is None else to_jax(memory),
            mask,
            float(eps),
        )
    return _final_norm(h, final_norm, eps)


def run_decoder_cached(
    y: np.ndarray,
    memory: np.ndarray,
    layers: Sequence[Mapping[str, Any]],
    num_heads: int,
    mask: jax.Array | None,
    norm_first: bool,
    activation: str,
    eps: float,
    final_norm: Mapping[str, np.ndarray] | None,
    mha_params: Callable[..., dict[str, Any]],
    to_jax: Callable[[Any], jax.Array] = jnp.asarray,
) -> jax.Array:
    """Decode one position at a time: each layer sees only y[:, t] and its own key/value cache.
    mask: (B, H, T, S) boolean or None; step t uses its row t."""
    if not layers:  # the loop below would make an empty stack the identity
        raise ValueError("layers must hold at least one layer's params; got none")
    B, T, D = y.shape
    if D % num_heads:
        raise ValueError(f"D={D} is not divisible by H={num_heads}")
    steps = [
        (
            _step(
                num_heads,
                p["ffn"]["w1"].shape[1],
                norm_first,
                activation,
                np.dtype(y.dtype).name,
                D,
            ),
            flax_layer_params(p, D, num_heads, mha_params),
        )
        for p in layers
    ]
    caches = [_empty_cache(B, T, D, num_heads, y.dtype) for _ in layers]
    mem, ys = to_jax(memory), to_jax(y)
    outputs = []
    for t in range(T):
        h = ys[:, t : t + 1]  # (B, 1, D): this step's input only
        for i, (step, params) in enumerate(steps):
            h, caches[i] = step(
                params,
                caches[i],
                h,
                mem,
                None if mask is None else mask[:, :, t : t + 1],
                float(eps),
            )
        outputs.append(h)
    return _final_norm(jnp.concatenate(outputs, axis=1), final_norm, eps)  # (B, T, D)
