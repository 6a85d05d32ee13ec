"""grouped_multi_head_attention on torch and jax: the projections as their users write them around
the library's own grouped attention (torch has no grouped multi-head module; HF's Llama family is
one, adapters/hf_attention.py).

- torch: F.linear with the canonical W^T, then F.scaled_dot_product_attention(enable_gqa=True),
  which repeats each key/value head for its H / Hkv query heads.
- jax: x @ W, then jax.nn.dot_product_attention, which groups natively (k, v with fewer heads).

Refusals are the libraries' own: a projection whose width is not heads x head width fails its
reshape, Hkv not dividing H is refused by the attention op, a W_o of the wrong rows by the matmul.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


class TorchGroupedMHA:
    """Mixed into TorchAdapter (its _t, _np and _sdpa_mask)."""

    _t: Any
    _np: Any
    _sdpa_mask: Any

    def grouped_multi_head_attention(
        self,
        query: np.ndarray,
        key: np.ndarray,
        value: np.ndarray,
        params: Mapping[str, np.ndarray],
        num_heads: int,
        num_kv_heads: int,
        mask: np.ndarray | None = None,
        causal: str | None = None,
    ) -> np.ndarray:
        import torch.nn.functional as F

        B, T, _ = query.shape
        S = key.shape[1]

        def project(x: np.ndarray, w: str, b: str, L: int, heads: int) -> Any:
            bias = self._t(params[b]) if params.get(b) is not None else None
            y = F.linear(self._t(x), self._t(params[w]).T, bias)  # (B, L, heads width)
            return y.view(B, L, heads, -1).transpose(1, 2)  # (B, heads, L, width)

        q = project(query, "w_q", "b_q", T, num_heads)  # (B, H, T, K)
        k = project(key, "w_k", "b_k", S, num_kv_heads)  # (B, Hkv, S, K)
        v = project(value, "w_v", "b_v", S, num_kv_heads)  # (B, Hkv, S, Kv)
        attn_mask, is_causal = self._sdpa_mask(mask, causal, T, S)
        context = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal, enable_gqa=True
        )  # (B, H, T, Kv)
        b_o = self._t(params["b_o"]) if params.get("b_o") is not None else None
        out = F.linear(context.transpose(1, 2).reshape(B, T, -1), self._t(params["w_o"]).T, b_o)
        return self._np(out)  # (B, T, D)


class JaxGroupedMHA:
    """Mixed into JaxAdapter (its _j, _np and _attend: jax.nn.dot_product_attention)."""

    _j: Any
    _np: Any
    _attend: Any

    def grouped_multi_head_attention(
        self,
        query: np.ndarray,
        key: np.ndarray,
        value: np.ndarray,
        params: Mapping[str, np.ndarray],
        num_heads: int,
        num_kv_heads: int,
        mask: np.ndarray | None = None,
        causal: str | None = None,
    ) -> np.ndarray:
        B, T, _ = query.shape
        S = key.shape[1]

        def project(x: np.ndarray, w: str, b: str, L: int, heads: int) -> Any:
            y = self._j(x) @ self._j(params[w])  # (B, L, heads width)
            if params.get(b) is not None:
                y = y + self._j(params[b])
            return y.reshape(B, L, heads, -1).transpose(0, 2, 1, 3)  # (B, heads, L, width)

        q = project(query, "w_q", "b_q", T, num_heads)  # (B, H, T, K)
        k = project(key, "w_k", "b_k", S, num_kv_heads)  # (B, Hkv, S, K)
        v = project(value, "w_v", "b_v", S, num_kv_heads)  # (B, Hkv, S, Kv)
        context = self._attend(q, k, v, mask, None, causal)  # (B, H, T, Kv)
        out = context.transpose(0, 2, 1, 3).reshape(B, T, -1) @ self._j(params["w_o"])  # (B, T, D)
        if params.get("b_o") is not None:
            out = out + self._j(params["b_o"])
        return self._np(out)
