"""keras 3 adapter: keras.layers.MultiHeadAttention, on the backend KERAS_BACKEND names (default
jax).

`KERAS_BACKEND=torch pytest --adapter keras` checks the torch backend (keras picks its backend once
per process, so one run checks one backend; the adapter is named keras-jax or keras-torch
accordingly).

Selectable as `--adapter keras` once `pip install -e ".[thirdparty]"` has installed keras; not part
of the default run. The canonical MHA weights map onto keras's EinsumDense kernels as they do onto
flax's: query/key/value (D, H, K), output (H, K, D). keras's attention_mask is (B, T, S), True = may
attend: a spec mask that differs per head cannot be expressed (Unsupported), nor can a finite
additive bias.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")
if os.environ["KERAS_BACKEND"] == "jax":
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 inputs must stay float64

import keras

from reference.masks import causal_mask
from spec.core import Unsupported


class KerasAdapter:
    name = f"keras-{keras.backend.backend()}"
    # Both hold on the jax and the torch backend (measured on each, keras 3.15.1).
    deviations: dict[str, str] = {
        "multi_head_attention.fully_masked_rows_are_zero": (
            "keras turns the boolean mask into a large negative bias before "
            "ops.dot_product_attention, "
            "so a fully masked row averages V (the output is that average projected, not b_o)"
        ),
        **{
            f"multi_head_attention.{p}@float64": (
                "keras.ops.dot_product_attention casts q, k, v to keras.backend.result_type(q, k, "
                "v), which is "
                "'float32' for float64 inputs: float64 attention gets float32 accuracy (8e-9 on "
                "outputs of 0.1). "
                "Reproduce: keras.ops.dot_product_attention(x, x, x).dtype == float32 for a "
                "float64 x"
            )
            for p in (
                "matches_reference",
                "single_head_is_projected_attention",
                "batch_equals_items",
                "vjp_matches_finite_differences",
            )
        },
    }

    def _mask(
        self, mask: np.ndarray | None, causal: str | None, B: int, H: int, T: int, S: int
    ) -> np.ndarray | None:
        """The spec's mask (and causal alignment) as keras's (B, T, S) boolean attention_mask."""
        allowed = np.ones((B, H, T, S), dtype=bool)
        if mask is not None:
            if mask.dtype != np.bool_:
                finite = np.isfinite(mask.astype(np.float64))
                if (mask.astype(np.float64)[finite] != 0).any():
                    raise Unsupported(
                        "keras MultiHeadAttention takes no additive bias, only boolean masks"
                    )
                mask = finite
            allowed &= mask
        if causal is not None:
            allowed &= causal_mask(T, S, causal)
        if mask is None and causal is None:
            return None
        if not (allowed == allowed[:, :1]).all():
            raise Unsupported(
                "keras's attention_mask has no head axis: a per-head mask cannot be expressed"
            )
        return allowed[:, 0]  # (B, T, S)

    def _layer(self, query: np.ndarray, key: np.ndarray, value: np.ndarray, num_heads: int) -> Any:
        D = query.shape[-1]
        if D % num_heads:
            raise ValueError(f"D={D} is not divisible by H={num_heads}")
        K = D // num_heads
        layer = keras.layers.MultiHeadAttention(
            num_heads=num_heads, key_dim=K, value_dim=K, dtype=np.dtype(query.dtype).name
        )
        layer.build(query.shape, value.shape, key.shape)
        return layer

    @staticmethod
    def _weights(params: Mapping[str, Any], D: int, H: int, dtype: np.dtype) -> list[Any]:
        """The canonical weights in keras's order (query, key, value, output), shaped as its
        EinsumDense kernels."""
        K, zeros = D // H, np.zeros(D, dtype=dtype)
        weights: list[Any] = []
        for n in ("q", "k", "v"):
            weights += [
                params[f"w_{n}"].reshape(D, H, K),
                params.get(f"b_{n}", zeros).reshape(H, K),
            ]
        return [*weights, params["w_o"].reshape(H, K, D), params.get("b_o", zeros)]

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
        layer = self._layer(query, key, value, num_heads)
        layer.set_weights(
            self._weights(params, D, num_heads, query.dtype)
        )  # raises on a shape mismatch
        attention_mask = self._mask(mask, causal, B, num_heads, T, key.shape[1])
        out = layer(query, value, key=key, attention_mask=attention_mask)
        return np.asarray(keras.ops.convert_to_numpy(out))

    def vjp(
        self, component: str, inputs: Mapping[str, Any], cotangent: np.ndarray, wrt: tuple[str, ...]
    ) -> dict[str, np.ndarray]:
        """jax.vjp through keras's own layer, called statelessly (Layer.stateless_call) with the
        weights as traced arguments. jax backend only; an array passed as query, key and value is
        traced once."""
        if component != "multi_head_attention" or keras.backend.backend() != "jax":
            raise Unsupported(
                "keras vjp: multi_head_attention on the jax backend only", everywhere=True
            )
        import jax
        import jax.numpy as jnp

        from spec.gradients import get_path

        query, key, value, params, H = (
            inputs[n] for n in ("query", "key", "value", "params", "num_heads")
        )
        B, T, D = query.shape
        layer = self._layer(query, key, value, H)
        attention_mask = self._mask(inputs.get("mask"), inputs.get("causal"), B, H, T, key.shape[1])

        def forward(*arrays: Any) -> Any:
            x = dict(zip(wrt, arrays, strict=True))
            q = x.get("query", query)
            k = q if key is query else x.get("key", key)
            v = k if value is key else x.get("value", value)
            p = {n: x.get(f"params.{n}", w) for n, w in params.items()}
            out, _ = layer.stateless_call(
                self._weights(p, D, H, query.dtype), [], q, v, key=k, attention_mask=attention_mask
            )
            return out

        out, pullback = jax.vjp(forward, *(jnp.asarray(get_path(inputs, p)) for p in wrt))
        grads = pullback(jnp.asarray(cotangent, dtype=out.dtype))
        return {p: np.asarray(g) for p, g in zip(wrt, grads, strict=True)}


adapter = KerasAdapter()
