"""Encoder and decoder layers for the jax adapter, built from flax's own modules.

flax has no Transformer layer: these modules compose nn.MultiHeadDotProductAttention, nn.Dense and
nn.LayerNorm the way the paper wires them (post-LN or pre-LN), with flax's nn.make_causal_mask for
the decoder. The canonical parameters (reference/stacks.py) are mapped onto the module's tree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import cache, partial
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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

    def _attention(self, name: str) -> nn.Module:
        return nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dtype=self.dtype, param_dtype=self.dtype, deterministic=True, name=name
        )

    def _residual(self, x: jax.Array, sublayer: Callable[[jax.Array], jax.Array], norm: str) -> jax.Array:
        ln = nn.LayerNorm(epsilon=self.eps, dtype=self.dtype, param_dtype=self.dtype, name=norm)
        return x + sublayer(ln(x)) if self.norm_first else ln(x + sublayer(x))

    def _ffn(self, h: jax.Array) -> jax.Array:
        h = nn.Dense(self.width, dtype=self.dtype, param_dtype=self.dtype, name="ffn1")(h)
        return nn.Dense(self.features, dtype=self.dtype, param_dtype=self.dtype, name="ffn2")(ACTIVATIONS[self.activation](h))

    @nn.compact
    def __call__(self, x: jax.Array, memory: jax.Array | None, mask: jax.Array | None) -> jax.Array:
        if not self.decoder:
            x = self._residual(x, lambda h: self._attention("self_attn")(h, h, h, mask=mask), "norm1")
            return self._residual(x, self._ffn, "norm2")
        causal = nn.make_causal_mask(x[..., 0])  # (B, 1, T, T)
        x = self._residual(x, lambda h: self._attention("self_attn")(h, h, h, mask=causal), "norm1")
        x = self._residual(x, lambda h: self._attention("cross_attn")(h, memory, memory, mask=mask), "norm2")
        return self._residual(x, self._ffn, "norm3")


def flax_layer_params(params: Mapping[str, Any], D: int, H: int, mha_params: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """Canonical layer params as the Layer module's parameter tree (flax Dense kernels are (in, out), as canonical)."""
    tree: dict[str, Any] = {"self_attn": mha_params(params["self_attn"], D, H)}
    if "cross_attn" in params:
        tree["cross_attn"] = mha_params(params["cross_attn"], D, H)
    ffn = params["ffn"]
    tree["ffn1"] = {"kernel": ffn["w1"], "bias": ffn["b1"]}
    tree["ffn2"] = {"kernel": ffn["w2"], "bias": ffn["b2"]}
    for i in (1, 2, 3):
        if f"norm{i}" in params:
            tree[f"norm{i}"] = {"scale": params[f"norm{i}"]["gamma"], "bias": params[f"norm{i}"]["beta"]}
    return tree


@cache
def _apply(
    num_heads: int, width: int, norm_first: bool, activation: str, eps: float, decoder: bool, dtype: str, D: int
) -> Callable[..., Any]:
    layer = Layer(num_heads, width, norm_first, activation, eps, decoder, dtype, D)
    return jax.jit(lambda params, x, memory, mask: layer.apply({"params": params}, x, memory, mask))


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
) -> np.ndarray:
    """Apply the layers one after another (then the optional final flax LayerNorm)."""
    D = x.shape[-1]
    if D % num_heads:
        raise ValueError(f"D={D} is not divisible by H={num_heads}")
    h = jnp.asarray(x)
    for params in layers:
        fn = _apply(
            num_heads,
            params["ffn"]["w1"].shape[1],
            norm_first,
            activation,
            float(eps),
            memory is not None,
            np.dtype(x.dtype).name,
            D,
        )
        h = fn(flax_layer_params(params, D, num_heads, mha_params), h, None if memory is None else jnp.asarray(memory), mask)
    if final_norm is not None:
        ln = nn.LayerNorm(epsilon=eps, dtype=x.dtype, param_dtype=x.dtype)
        h = ln.apply({"params": {"scale": final_norm["gamma"], "bias": final_norm["beta"]}}, h)
    return np.asarray(h)
