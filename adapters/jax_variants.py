"""jax's attention variants (spec/variants.py): jax.nn.dot_product_attention's own
``local_window_size``, grouped heads, ``bias`` and ``return_residual`` (its log-sum-exp).

ALiBi goes in as jax's ``bias`` (B, Hq, T, S), -slope_h |t + off - s|, the form jax's docstring
gives the argument for. Its window is top-left aligned (jax._src.nn.functions._get_window_mask:
key s is kept for query t when t - left <= s <= t + right) and has no -1: the adapter passes an
unbounded side as T + S keys, which is what -1 means in the spec. A bottom-right window with
T != S is unsupported (jax has no alignment argument). jax has no soft-cap, sinks or merge: those
are unsupported, not re-implemented here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from adapters import Deviation
from adapters.compose import pack_offsets
from spec.core import Unsupported


def _jax_window(window: Any, align: str, T: int, S: int) -> tuple[int, int] | None:
    """The spec's window as jax's local_window_size."""
    if align not in ("top_left", "bottom_right"):
        raise ValueError(f"unknown align {align!r}")
    if window is None:
        return None
    if not (isinstance(window, (tuple, list)) and len(window) == 2):
        raise ValueError(f"window must be (left, right); got {window!r}")
    left, right = (int(w) for w in window)
    if left < -1 or right < -1:
        raise ValueError(f"window bounds must be >= -1; got {window}")
    if align == "bottom_right" and T != S:
        raise Unsupported("jax's local_window_size is top-left aligned only")
    wide = T + S  # as unbounded as -1 for these lengths
    return (wide if left == -1 else left, wide if right == -1 else right)


def _alibi(q: np.ndarray, k: np.ndarray, slopes: Any, align: str) -> np.ndarray | None:
    """ALiBi's bias as jax's bias argument: (B, Hq, T, S) in q's dtype."""
    if slopes is None:
        return None
    B, Hq, T, _ = q.shape
    S = k.shape[2]
    if not isinstance(slopes, np.ndarray) or slopes.shape != (Hq,):
        raise ValueError(
            f"alibi_slopes must be (Hq,)=({Hq},); got {getattr(slopes, 'shape', slopes)}"
        )
    off = S - T if align == "bottom_right" else 0
    distance = np.abs(np.arange(T)[:, None] + off - np.arange(S)[None, :]).astype(q.dtype)  # (T, S)
    bias = -slopes.astype(q.dtype)[None, :, None, None] * distance  # (1, Hq, T, S)
    return np.ascontiguousarray(np.broadcast_to(bias, (B, Hq, T, S)))


def _variants_unsupported(softcap: Any, sinks: Any = None) -> None:
    for name, given in (("soft-cap", softcap), ("sinks", sinks)):
        if given is not None:
            raise Unsupported(f"jax.nn.dot_product_attention has no {name}", everywhere=True)


EMPTY_LSE = (
    "jax.nn.dot_product_attention(..., return_residual=True) gives a row that sees no key a finite "
    "log-sum-exp near -finfo(float32).max (its masked logits are a large finite fill): a (0, 0) "
    "local_window_size row beside the keys returns -2.38e38, not -inf (jax 0.10.2)"
)


def variant_deviations(
    float32_softmax: str, fully_masked: Deviation, silent_broadcast: str
) -> dict[str, Any]:
    """What jax does differently on these components: the SDPA deviations the same call carries,
    and the log-sum-exp of an empty row."""
    out = {
        "variant_attention.empty_rows_follow_the_convention": fully_masked,
        "attention_lse.empty_rows_follow_the_convention": EMPTY_LSE,
    }
    for c in ("variant_attention", "attention_lse"):
        out[f"{c}.matches_reference@float64"] = float32_softmax
        out[f"{c}.refuses[nan_scale]"] = "jax.nn.dot_product_attention accepts scale=NaN"
        out[f"{c}.refuses[empty_keys]"] = "jax.nn.dot_product_attention accepts S = 0"
        out[f"{c}.refuses[mask_not_broadcastable]"] = silent_broadcast
    out["variant_attention.vjp_matches_finite_differences@float64"] = float32_softmax
    return out


class JaxVariants:
    """variant_attention and attention_lse (mixed into JaxAdapter)."""

    _np: Any
    _attend: Any

    def variant_attention(
        self,
        q,
        k,
        v,
        mask=None,
        scale=None,
        causal=None,
        window=None,
        align="bottom_right",
        softcap=None,
        alibi_slopes=None,
        sinks=None,
    ):
        _variants_unsupported(softcap, sinks)
        win = _jax_window(window, align, q.shape[2], k.shape[2])
        bias = _alibi(q, k, alibi_slopes, align)
        return self._np(self._attend(q, k, v, mask, scale, causal, window=win, extra_bias=bias))

    def attention_lse(
        self,
        q,
        k,
        mask=None,
        scale=None,
        causal=None,
        window=None,
        align="bottom_right",
        softcap=None,
        alibi_slopes=None,
    ):
        _variants_unsupported(softcap)
        win = _jax_window(window, align, q.shape[2], k.shape[2])
        bias = _alibi(q, k, alibi_slopes, align)
        _, lse = self._attend(
            q, k, k, mask, scale, causal, window=win, residual=True, extra_bias=bias
        )
        return self._np(lse)  # (B, Hq, T), in the inputs' dtype (jax casts it to theirs)


def _bucket(n: int) -> int:
    """A padded length: the next power of two >= 4 (jax compiles one program per shape)."""
    return max(4, 1 << max(0, n - 1).bit_length())


def _rows_without_keys(inputs: Any) -> bool:
    """Some query row of the pack sees no key: a sequence with queries and no keys, or more
    queries than keys under bottom-right causality or a window."""
    T = np.diff(np.asarray(inputs["cu_seqlens_q"]))
    S = np.diff(np.asarray(inputs["cu_seqlens_k"]))
    empty = (T > 0) & (S == 0)
    if inputs.get("causal") == "bottom_right" or inputs.get("window") is not None:
        empty |= T > S
    return bool(empty.any())


def packed_deviations(float32_softmax: str, fully_masked: str) -> dict[str, Any]:
    """What the padded dot_product_attention call does differently on packed_attention: the
    float32 softmax, and a row that sees no key (it averages V over its padded row)."""
    from adapters import Deviation

    empty = Deviation(
        fully_masked,
        _rows_without_keys,
        "a query row of the pack sees no key",
        concerns=("fully_masked_row",),
    )
    return {
        # both sides of a comparison are jax's: each off by float32's error against float64 bounds
        **{
            f"packed_attention.{p}@float64": float32_softmax
            for p in ("matches_reference", "pack_is_its_sequences")
        },
        **{
            f"packed_attention.{p}": empty
            for p in ("matches_reference", "pack_is_its_sequences", "sequence_order_is_free")
        },
        "packed_attention.refuses[nan_scale]": "jax.nn.dot_product_attention accepts scale=NaN",
    }


class JaxPacked:
    """packed_attention (mixed into JaxAdapter): jax has no packed layout, so the pack goes in as
    the padded batch jax takes ragged sequences in, (N, H, Tmax, .) with each sequence at the start
    of its row, a key-padding mask, and each sequence's causality as the mask jax is given (its
    is_causal aligns top-left, the spec's varlen causality bottom-right). Windows are its
    local_window_size, top-left aligned: a bottom-right window over a sequence whose query and key
    lengths differ is unsupported. Padded lengths are rounded up to powers of two (one compilation
    per bucket, not per pack)."""

    _np: Any
    _attend: Any

    def packed_attention(
        self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale=None, causal=None, window=None
    ):
        cq, ck, T, S = pack_offsets(cu_seqlens_q, cu_seqlens_k, q.shape[0], k.shape[0])
        if v.shape[0] != k.shape[0]:
            raise ValueError(f"v must have k's Nk = {k.shape[0]} tokens; got {v.shape}")
        if causal not in (None, "bottom_right", "top_left"):
            raise ValueError(f"unknown causal {causal!r}")
        N, Tm, Sm = _bucket(len(T)), _bucket(int(T.max())), _bucket(int(S.max()))
        aligned = causal == "top_left" or bool((T == S).all())
        if window is not None and not aligned:
            raise Unsupported("jax's local_window_size is top-left aligned only")
        win = _jax_window(window, "top_left", Tm, Sm)
        pad = [
            np.zeros((N, x.shape[1], L, x.shape[2]), x.dtype)
            for x, L in ((q, Tm), (k, Sm), (v, Sm))
        ]
        qb, kb, vb = pad  # (N, H, Tmax, .), each sequence at the start of its row
        allowed = np.zeros((N, 1, Tm, Sm), bool)
        for n in range(len(T)):
            qb[n, :, : T[n]] = np.swapaxes(q[cq[n] : cq[n + 1]], 0, 1)
            kb[n, :, : S[n]] = np.swapaxes(k[ck[n] : ck[n + 1]], 0, 1)
            vb[n, :, : S[n]] = np.swapaxes(v[ck[n] : ck[n + 1]], 0, 1)
            allowed[n, 0, :, : S[n]] = True
            if causal is not None:  # the sequence's own alignment, its diagonal at t + off
                off = S[n] - T[n] if causal == "bottom_right" else 0
                allowed[n, 0] &= np.arange(Sm)[None, :] <= np.arange(Tm)[:, None] + off
        out = self._np(self._attend(qb, kb, vb, allowed, scale, None, window=win))
        rows = [np.swapaxes(out[n, :, : T[n]], 0, 1) for n in range(len(T))]  # (T_i, Hq, Kv)
        return np.concatenate(rows, axis=0)  # (Nq, Hq, Kv)
