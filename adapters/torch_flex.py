"""torch's attention variants: torch.nn.attention.flex_attention (spec/variants.py).

flex_attention takes the variants as user functions, which is how torch offers them: a
``score_mod`` on each scaled logit (the soft-cap, ALiBi's bias, an additive mask, in the spec's
order) and a ``block_mask`` from a ``mask_mod`` (causality, the window, a boolean mask), with
grouped heads (``enable_gqa``) and the log-sum-exp (``return_aux``) built in. Measured here
(torch 2.13, CPU): it runs eagerly, unfused (it warns that it materialises the scores), at ~5 to
50 ms a call once dynamo has traced the call and its mods (``_flex_attention``: a trace is ~0.3
s); compiling it would cost a compilation per shape. What flex_attention cannot express
is unsupported: sinks (no term joins its softmax denominator) and merging states (torch has no
merge).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn.attention.flex_attention import AuxRequest, create_block_mask, flex_attention

from adapters.compose import pack_offsets
from spec.core import Unsupported

FLEX_DEVIATIONS = {
    f"{c}.refuses[nan_scale]": "torch.nn.attention.flex_attention accepts scale=NaN without a "
    "check and returns NaN: flex_attention(q, k, v, scale=float('nan')) (torch 2.13.0)"
    for c in ("variant_attention", "attention_lse", "packed_attention")
}
# flex_attention runs eagerly here at 20-50 ms a call (100 times torch's SDPA): its tests draw this
# share of the profile's examples, so the default run keeps its budget (the plugin reads it)
FLEX_EXAMPLE_SHARES = {
    "variant_attention": 0.4,
    "attention_lse": 0.4,
    "merge_attention_states": 0.4,
    "packed_attention": 0.25,  # and a block mask built for every call
    "paged_attention": 0.25,
}


def _flex_attention(*args: Any, **kwargs: Any) -> Any:
    """flex_attention as called, with dynamo's size reasoning told not to specialise sizes 0 and 1.

    Eager flex_attention still traces the call and its mods with dynamo (backend "eager": the
    traced graph runs the library's eager math, math_attention, on the real tensors). Dynamo
    specialises every size 0 or 1 it sees, so each pattern of unit sizes (B = 1, one head, one
    query, one key: the spec's buckets hold many) was a trace of its own, ~0.3 s: 140 traces for
    160 calls of the variant tests. Size-oblivious reasoning (torch's dynamic-shapes option)
    traces them once; what is computed is the same eager math. Measured on torch's variant_attention
    and attention_lse tests (ci profile, one process): 102 s before, 38 s after, every verdict the
    same."""
    config = getattr(torch.fx.experimental, "_config", None)
    if config is None or not hasattr(config, "backed_size_oblivious"):
        return flex_attention(*args, **kwargs)
    with config.patch(backed_size_oblivious=True):
        return flex_attention(*args, **kwargs)


class TorchFlex:
    """variant_attention and attention_lse through flex_attention (mixed into TorchAdapter)."""

    _t: Any
    _np: Any
    device: Any

    def _flex(
        self, q, k, v, mask, scale, causal, window, align, softcap, alibi_slopes
    ) -> tuple[torch.Tensor, torch.Tensor]:
        B, Hq, T, _ = q.shape
        S = k.shape[2]
        if k.shape[1] == 0 or Hq % k.shape[1]:
            raise ValueError(f"Hq={Hq} is not a multiple of Hkv={k.shape[1]}")
        tq, tk, tv = self._t(q), self._t(k), self._t(v)
        off = S - T if align == "bottom_right" else 0
        if align not in ("bottom_right", "top_left"):
            raise ValueError(f"unknown align {align!r}")
        bias = None
        allowed = None
        if mask is not None:
            m = np.broadcast_to(mask, (B, Hq, T, S))  # raises for a mask that does not broadcast
            if m.dtype == np.bool_:
                allowed = torch.from_numpy(np.array(m, copy=True)).to(self.device)
            else:
                bias = self._t(np.ascontiguousarray(m))  # (B, Hq, T, S)
        cap = None
        if softcap is not None:
            if not (np.isfinite(softcap) and softcap > 0):
                raise ValueError(f"softcap must be finite and > 0; got {softcap}")
            cap = float(softcap)
        slopes = None if alibi_slopes is None else self._t(alibi_slopes)
        if slopes is not None and slopes.shape != (Hq,):
            raise ValueError(f"alibi_slopes must be (Hq,)=({Hq},); got {tuple(slopes.shape)}")
        left, right = (-1, -1) if window is None else window
        if left < -1 or right < -1:
            raise ValueError(f"window bounds must be >= -1; got {window}")
        causal_off = None if causal is None else (S - T if causal == "bottom_right" else 0)
        # flex traces the mods with dynamo, which guards on the Python numbers they capture: each
        # new cap or offset would be a new trace (measured: ~1 s each). As 0-d tensors they are
        # data, and only which variants are on (None or not) decides the trace.
        n = {
            name: torch.tensor(x, device=self.device)
            for name, x in (
                ("cap", 1.0 if cap is None else cap),
                ("off", off),
                ("left", left),
                ("right", right),
                ("causal", 0 if causal_off is None else causal_off),
            )
        }
        # The mods test only booleans for which variants are on: a captured number read even in
        # `x is not None` is guarded by value, so each new cap or causal offset was a new trace
        # (measured: cap 2.0 then 3.0, two traces of ~0.2 s each)
        lower, upper = left >= 0, right >= 0
        capped, causal_on = cap is not None, causal_off is not None

        def score_mod(score, b, h, q_idx, kv_idx):
            if capped:
                score = n["cap"] * torch.tanh(score / n["cap"])
            if slopes is not None:
                score = score - slopes[h] * torch.abs(q_idx + n["off"] - kv_idx)
            if bias is not None:
                score = score + bias[b, h, q_idx, kv_idx]
            return score

        def mask_mod(b, h, q_idx, kv_idx):
            keep = kv_idx >= 0
            if allowed is not None:
                keep = keep & allowed[b, h, q_idx, kv_idx]
            if causal_on:
                keep = keep & (kv_idx <= q_idx + n["causal"])
            if lower:
                keep = keep & (kv_idx >= q_idx + n["off"] - n["left"])
            if upper:
                keep = keep & (kv_idx <= q_idx + n["off"] + n["right"])
            return keep

        per_item = allowed is not None
        block_mask = create_block_mask(
            mask_mod, B if per_item else None, Hq if per_item else None, T, S, device=self.device
        )
        try:
            out, aux = _flex_attention(
                tq,
                tk,
                tv,
                score_mod=score_mod,
                block_mask=block_mask,
                scale=scale,
                enable_gqa=True,
                return_aux=AuxRequest(lse=True),  # return_lse is deprecated in torch 2.13
            )
        except NotImplementedError as e:  # e.g. "FlexAttention does not support backward on CPU"
            raise Unsupported(f"flex_attention: {e}", everywhere="backward" in str(e)) from e
        assert aux.lse is not None  # AuxRequest(lse=True) asked for it
        return out, aux.lse

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
        if sinks is not None:
            raise Unsupported(
                "flex_attention has no sinks: no term joins its softmax denominator",
                everywhere=True,
            )
        if v.shape[1] != k.shape[1]:
            raise ValueError(f"v's heads {v.shape[1]} differ from k's {k.shape[1]}")
        out, _ = self._flex(q, k, v, mask, scale, causal, window, align, softcap, alibi_slopes)
        return self._np(out)  # (B, Hq, T, Kv)

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
        # flex returns the lse in float32 whatever the inputs; the spec's output is in theirs
        out, lse = self._flex(q, k, k, mask, scale, causal, window, align, softcap, alibi_slopes)
        return self._np(lse.to(out.dtype))  # (B, Hq, T)


class TorchPacked:
    """packed_attention through flex_attention's document masking (mixed into TorchAdapter): the
    pack is one batch row of Nq queries and Nk keys, and the mask_mod keeps a key for a query when
    both belong to the same sequence and the sequence's causality and window allow it. This is how
    torch documents packed sequences for flex ("document masking"); torch's own varlen_attn
    (torch.nn.attention.varlen) runs on CUDA only (adapters/kernel_backends.py)."""

    _t: Any
    _np: Any
    device: Any

    def packed_attention(
        self, q, k, v, cu_seqlens_q, cu_seqlens_k, scale=None, causal=None, window=None
    ):
        Nq, Hq, _ = q.shape
        Nk = k.shape[0]
        cq, ck, Tq, Sk = pack_offsets(cu_seqlens_q, cu_seqlens_k, Nq, Nk)
        if causal not in (None, "bottom_right", "top_left"):
            raise ValueError(f"unknown causal {causal!r}")
        left, right = (-1, -1) if window is None else window
        if left < -1 or right < -1:
            raise ValueError(f"window bounds must be >= -1; got {window}")
        N = len(Tq)
        t = {  # per token: its sequence and its position in it; per sequence: its offset
            "doc_q": np.repeat(np.arange(N), Tq),
            "doc_k": np.repeat(np.arange(N), Sk),
            "pos_q": np.arange(Nq) - np.repeat(cq[:-1], Tq),
            "pos_k": np.arange(Nk) - np.repeat(ck[:-1], Sk),
            "off": (Sk - Tq) if causal != "top_left" else np.zeros(N, np.int64),
            "left": np.int64(left),
            "right": np.int64(right),
        }
        n = {
            name: torch.as_tensor(np.asarray(x, np.int64), device=self.device)
            for name, x in t.items()
        }
        lower, upper = left >= 0, right >= 0

        def mask_mod(b, h, q_idx, kv_idx):
            doc = n["doc_q"][q_idx]
            keep = doc == n["doc_k"][kv_idx]
            diagonal = n["pos_q"][q_idx] + n["off"][doc]  # the key position query t aligns with
            if causal is not None:
                keep = keep & (n["pos_k"][kv_idx] <= diagonal)
            if lower:
                keep = keep & (n["pos_k"][kv_idx] >= diagonal - n["left"])
            if upper:
                keep = keep & (n["pos_k"][kv_idx] <= diagonal + n["right"])
            return keep

        block_mask = create_block_mask(mask_mod, None, None, Nq, Nk, device=self.device)
        # (N, H, .) -> (1, H, N, .): the pack as one batch row, heads before positions
        tq, tk, tv = (self._t(x).transpose(0, 1)[None] for x in (q, k, v))
        out = _flex_attention(tq, tk, tv, block_mask=block_mask, scale=scale, enable_gqa=True)
        assert isinstance(out, torch.Tensor)
        return self._np(out[0].transpose(0, 1))  # (Nq, Hq, Kv)


_ASSIGN = (
    "torch.nn.attention.experimental PagedAttention.assign checks shapes only: a position past "
    "the table's pages reads page_table -1 and writes at address -page_size + offset, wrapping "
    "into the last physical page (page_table[0] = [0, 1, -1], assign(input_pos=[[2]]) writes "
    "page 2, torch 2.13.0); a page number past the cache or two tokens on one slot are written "
    "as given"
)
_CONVERT = (
    "PagedAttention.convert_logical_block_mask gathers the table as given: a page in use "
    "numbered -1 or P, a length past the table's capacity or below T are attended over without "
    "a check (torch 2.13.0)"
)
PAGED_DEVIATIONS = {
    "paged_cache_write.a_refused_write_writes_nothing": _ASSIGN,
    **{
        f"paged_cache_write.refuses[{b}]": _ASSIGN
        for b in ("writes_past_capacity", "table_page_outside", "shared_slot")
    },
    **{
        f"paged_attention.refuses[{b}]": _CONVERT
        for b in (
            "table_page_outside",
            "table_page_negative",
            "length_past_capacity",
            "length_below_T",
        )
    },
    "paged_attention.refuses[nan_scale]": FLEX_DEVIATIONS["variant_attention.refuses[nan_scale]"],
}


class TorchPaged:
    """paged_attention and paged_cache_write through torch's PagedAttention
    (torch.nn.attention.experimental._paged_attention, mixed into TorchAdapter): the spec's block
    table becomes its page_table, the pages its physical cache (1, H, n_pages x page_size, .),
    ``assign`` writes new tokens, and ``convert_logical_block_mask`` turns a logical flex block mask
    (the sequence's length, causality, window) into one over the physical pages. The write works on
    a copy of the pages: the spec's write returns new pages."""

    _t: Any
    _np: Any
    device: Any

    def _pager(self, table: np.ndarray, P: int, page: int, lens: np.ndarray | None = None) -> Any:
        from torch.nn.attention.experimental._paged_attention import PagedAttention

        B, width = table.shape
        pager = PagedAttention(max(P, width), page, B, device=str(self.device))
        pager.page_table[:, :width] = torch.as_tensor(table, dtype=torch.int64)
        if lens is not None:  # physical -> logical, for the pages each sequence uses
            for b in range(B):
                used = table[b, : -(-int(lens[b]) // page)]
                pager.physical_to_logical[b, torch.as_tensor(used, dtype=torch.int64)] = (
                    torch.arange(len(used), dtype=torch.int64)
                )
        return pager

    def _cache(self, pages: np.ndarray, n_pages: int) -> torch.Tensor:
        """(P, page, H, .) -> the physical cache (1, H, n_pages x page, .), zero pages past P."""
        P, page, H, D = pages.shape
        t = self._t(pages).reshape(P * page, H, D).permute(1, 0, 2)[None]  # (1, H, P page, D)
        pad = torch.zeros(1, H, (n_pages - P) * page, D, dtype=t.dtype, device=t.device)
        return torch.cat([t, pad], dim=2).contiguous()

    def paged_cache_write(self, pages, block_table, cache_lens, new):
        table, lens = np.asarray(block_table), np.asarray(cache_lens)
        if table.dtype.kind not in "iu" or lens.dtype.kind not in "iu":
            raise ValueError("block_table and cache_lens must be int arrays")
        P, page, H, D = pages.shape
        B, T = new.shape[:2]
        pager = self._pager(table, P, page)
        n_pages = pager.page_table.shape[1]
        k_cache, v_cache = self._cache(pages, n_pages), self._cache(pages, n_pages)
        positions = torch.as_tensor(lens[:, None] + np.arange(T)[None, :], dtype=torch.int64)
        val = self._t(new).permute(0, 2, 1, 3)  # (B, T, H, D) -> (B, H, T, D)
        pager.assign(torch.arange(B), positions, val, val, k_cache, v_cache)
        out = k_cache[0, :, : P * page].permute(1, 0, 2).reshape(P, page, H, D)
        return self._np(out)

    def paged_attention(
        self, q, k_pages, v_pages, block_table, cache_lens, scale=None, causal=True, window=None
    ):
        table, lens = np.asarray(block_table), np.asarray(cache_lens)
        if table.dtype.kind not in "iu" or lens.dtype.kind not in "iu":
            raise ValueError("block_table and cache_lens must be int arrays")
        B, Hq, T, _ = q.shape
        P, page = k_pages.shape[:2]
        left, right = (-1, -1) if window is None else window
        if left < -1 or right < -1:
            raise ValueError(f"window bounds must be >= -1; got {window}")
        pager = self._pager(table, P, page, lens)
        n_pages = pager.page_table.shape[1]
        n = {  # 0-d tensors, not Python numbers: dynamo would retrace the mods for each new one
            "len": torch.as_tensor(lens, dtype=torch.int64),
            "T": torch.tensor(T),
            "left": torch.tensor(left),
            "right": torch.tensor(right),
        }
        lower, upper = left >= 0, right >= 0

        def mask_mod(b, h, q_idx, kv_idx):  # logical positions: the spec's rule
            position = q_idx + n["len"][b] - n["T"]  # query t's place in its sequence
            keep = kv_idx < n["len"][b]
            if causal:
                keep = keep & (kv_idx <= position)
            if lower:
                keep = keep & (kv_idx >= position - n["left"])
            if upper:
                keep = keep & (kv_idx <= position + n["right"])
            return keep

        logical = create_block_mask(
            mask_mod, B, None, T, table.shape[1] * page, device=self.device, BLOCK_SIZE=(128, page)
        )
        physical = pager.convert_logical_block_mask(logical, kv_len=n["len"])
        k_cache = self._cache(k_pages, n_pages).expand(B, -1, -1, -1)  # (B, Hkv, n_pages page, K)
        v_cache = self._cache(v_pages, n_pages).expand(B, -1, -1, -1)
        out = _flex_attention(
            self._t(q), k_cache, v_cache, block_mask=physical, scale=scale, enable_gqa=True
        )
        assert isinstance(out, torch.Tensor)
        return self._np(out)  # (B, Hq, T, Kv)
