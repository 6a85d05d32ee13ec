"""jax's attention variants (spec/variants.py): jax.nn.dot_product_attention's own
``local_window_size``, grouped heads and ``return_residual`` (its log-sum-exp).

Its window is top-left aligned (jax._src.nn.functions._get_window_mask: key s is kept for query t
when t - left <= s <= t + right) and has no -1: the adapter passes an unbounded side as T + S keys,
which is what -1 means in the spec. A bottom-right window with T != S is unsupported (jax has no
alignment argument). jax has no soft-cap, ALiBi, sinks or merge: those are unsupported, not
re-implemented here.
"""

from __future__ import annotations

from typing import Any

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


def _variants_unsupported(softcap: Any, alibi_slopes: Any, sinks: Any = None) -> None:
    for name, given in (("soft-cap", softcap), ("ALiBi", alibi_slopes), ("sinks", sinks)):
        if given is not None:
            raise Unsupported(f"jax.nn.dot_product_attention has no {name}")


EMPTY_LSE = (
    "jax.nn.dot_product_attention(..., return_residual=True) gives a row that sees no key a finite "
    "log-sum-exp near -finfo(float32).max (its masked logits are a large finite fill): a (0, 0) "
    "local_window_size row beside the keys returns -2.38e38, not -inf (jax 0.10.2)"
)


def variant_deviations(
    float32_softmax: str, fully_masked: str, silent_broadcast: str
) -> dict[str, str]:
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
        _variants_unsupported(softcap, alibi_slopes, sinks)
        win = _jax_window(window, align, q.shape[2], k.shape[2])
        return self._np(self._attend(q, k, v, mask, scale, causal, window=win))

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
        _variants_unsupported(softcap, alibi_slopes)
        win = _jax_window(window, align, q.shape[2], k.shape[2])
        _, lse = self._attend(q, k, k, mask, scale, causal, window=win, residual=True)
        return self._np(lse)  # (B, Hq, T), in the inputs' dtype (jax casts it to theirs)
