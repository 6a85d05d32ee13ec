"""Spec entries: paged key/value caches (reference/layouts.py).

    paged_attention(q, k_pages, v_pages, block_table, cache_lens, scale=None, causal=True,
                    window=None) -> (B, Hq, T, Kv)
    paged_cache_write(pages, block_table, cache_lens, new) -> pages (P, page_size, H, K)

Pages (P, page_size, Hkv, .) hold every sequence's keys and values in any order; block_table
(B, max_pages) maps sequence b's logical page j to a physical page, as vLLM's block tables,
FlashInfer's paged kv and flash-attention's block_table do. Pinned:
- cache_lens counts every key of a sequence, the T new tokens included (FlashInfer's kv_len; the
  length after flash_attn_with_kvcache's append): query t sits at cache_lens[b] - T + t, and causal
  (the default: decoding and chunked prefill are causal) is bottom-right;
- entries of the table past a sequence's pages are ignored; those in use must name a page;
- paged_cache_write takes the lengths before the write and returns new pages: a refused write
  writes nothing (the input pages are never modified).
error_scale: scaled_dot_product_attention's context scale over each sequence's gathered cache; 0 for
the write (a copy is exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from hypothesis import strategies as st

import reference as R
from spec.attention import context_error_scale
from spec.core import BadInput, Component, Subject, prop
from spec.domains import Arg, region
from spec.dtypes import BFLOAT16, FLOAT32, DType
from spec.grouped import GROUPS
from spec.strategies import arrays, attention_scales, qk_magnitude, seeds
from spec.tolerance import compare


@dataclass(frozen=True)
class Paging:
    """The discrete axis of paged tests: "decode" (T = 1) or "prefill" (a chunk T > 1), "window",
    "full" (not causal)."""

    prefill: bool = False
    window: bool = False
    causal: bool = True

    def __str__(self) -> str:
        parts = ["prefill" if self.prefill else "decode"] + ["window"] * self.window
        return "+".join(parts + ([] if self.causal else ["full"]))

    @classmethod
    def parse(cls, text: Paging | str | None) -> Paging:
        if isinstance(text, Paging):
            return text
        parts = set((text or "decode").split("+"))
        if parts - {"decode", "prefill", "window", "full"}:
            raise ValueError(f"unknown paging parts {sorted(parts)}")
        return cls("prefill" in parts, "window" in parts, "full" not in parts)


VARIANTS = (
    Paging(),
    Paging(window=True),
    Paging(causal=False),
    Paging(prefill=True),
    Paging(prefill=True, window=True),
    Paging(prefill=True, causal=False),
)
SEMANTIC = (FLOAT32, BFLOAT16)
PAGE_SIZES = (1, 3, 5, 16)  # one token a page, odd sizes, a kernel's 16


def _table(
    rng: np.random.Generator, lens: list[int], page: int, spare: int
) -> tuple[np.ndarray, int]:
    """A block table (B, max_pages) over P = sum of the pages in use + spare physical pages, the
    pages in a random physical order; unused entries hold any page."""
    used = [-(-L // page) for L in lens]
    P = sum(used) + spare
    physical = rng.permutation(P)
    width = max(used) + int(rng.integers(0, 2))
    table = rng.integers(0, P, size=(len(lens), width))
    start = 0
    for b, n in enumerate(used):
        table[b, :n] = physical[start : start + n]
        start += n
    return table.astype(np.int32), P


def _pages_of(
    rng: np.random.Generator, x: np.ndarray, P: int, table: np.ndarray, lens: list[int], page: int
) -> np.ndarray:
    """Physical pages (P, page, H, .) holding each sequence's contiguous cache x[b] (L_b, H, .)
    where the table puts it; slots nobody uses hold noise."""
    pages = rng.standard_normal((P, page, *x.shape[2:])).astype(x.dtype)
    for b, L in enumerate(lens):
        for s in range(L):
            pages[table[b, s // page], s % page] = x[b, s]
    return pages


def draw_paged(data: st.DataObject, dtype: DType, variant: Paging | str | None) -> dict[str, Any]:
    """q (B, Hq, T, K), pages, a block table, cache lengths >= T, a scale, causality, a window."""
    v = Paging.parse(variant)
    B = data.draw(st.integers(1, 3), label="B")
    Hkv = data.draw(st.sampled_from((1, 2)), label="Hkv")
    Hq = Hkv * data.draw(st.sampled_from(GROUPS), label="group")
    K = data.draw(st.sampled_from((4, 8, 16)), label="K")
    Kv = data.draw(st.sampled_from((4, 8)), label="Kv")
    T = data.draw(st.sampled_from((2, 3, 5)), label="T") if v.prefill else 1
    page = data.draw(st.sampled_from(PAGE_SIZES), label="page_size")
    lens = [
        T + data.draw(st.sampled_from((0, 1, 4, 15, 16, 17, 40)), label="L - T") for _ in range(B)
    ]
    rng = np.random.default_rng(data.draw(seeds(), label="pages_seed"))
    table, P = _table(rng, lens, page, spare=data.draw(st.integers(0, 3), label="spare_pages"))
    scale = data.draw(attention_scales(K), label="scale")
    Lm = max(lens)
    large = qk_magnitude(K, scale, dtype)
    keys = data.draw(arrays((B, Lm, Hkv, K), dtype, large=large), label="keys")  # contiguous
    values = data.draw(arrays((B, Lm, Hkv, Kv), dtype), label="values")
    window = None
    if v.window:
        left = data.draw(st.sampled_from([-1, 0, 1, 3, 16]), label="window_left")
        right = data.draw(
            st.sampled_from([0, -1] if v.causal else [0, 2, -1]), label="window_right"
        )
        window = (left, right)
    return {
        "q": data.draw(arrays((B, Hq, T, K), dtype, large=large), label="q"),
        "k_pages": _pages_of(rng, keys, P, table, lens, page),
        "v_pages": _pages_of(rng, values, P, table, lens, page),
        "block_table": table,
        "cache_lens": np.array(lens, np.int32),
        "scale": scale,
        "causal": v.causal,
        "window": window,
    }


def contiguous(i: Mapping[str, Any], b: int) -> dict[str, Any]:
    """Sequence b's query rows and gathered cache as variant_attention's inputs (1, H, ., .)."""
    L = int(i["cache_lens"][b])
    k, v = (
        np.swapaxes(R.layouts.gather_pages(i[n], i["block_table"][b], L), 0, 1)[None]
        for n in ("k_pages", "v_pages")
    )
    causal = "bottom_right" if i.get("causal", True) else None
    return {
        "q": i["q"][b : b + 1],
        "k": k,
        "v": v,
        "scale": i.get("scale"),
        "causal": causal,
        "window": i.get("window"),
        "align": "bottom_right",
    }


def paged_error_scale(i: Mapping[str, Any]) -> float:
    G = i["q"].shape[1] // i["k_pages"].shape[2]
    scales = []
    for b in range(i["q"].shape[0]):
        c = contiguous(i, b)
        c = {**c, "k": np.repeat(c["k"], G, 1), "v": np.repeat(c["v"], G, 1)}
        scales.append(context_error_scale(c))
    return max(scales)


def _page(i: Mapping[str, Any]) -> int:
    return int(i["k_pages"].shape[1])


Q_ARG = Arg(
    "q",
    "float array (B, Hq, T, K): the last T tokens of each sequence; Hq a multiple of Hkv",
    invisible={
        "swapped with k_pages": "q and k_pages share a shape only when B = Hq = T = 1 and P = "
        "page_size = Hkv = 1: one query over one key, whose output is v whatever q and k hold"
    },
    regions=(
        region("T = 1 (decode)", lambda v, i: v.shape[2] == 1),
        region("T > 1 (chunked prefill)", lambda v, i: v.shape[2] > 1),
        region("Hq > Hkv", lambda v, i: v.shape[1] > i["k_pages"].shape[2]),
    ),
)
K_PAGES_ARG = Arg(
    "k_pages",
    "float array (P, page_size, Hkv, K), page_size >= 1",
    regions=(
        region("page_size 1", lambda v, i: v.shape[1] == 1),
        region("an odd page_size > 1", lambda v, i: v.shape[1] > 1 and v.shape[1] % 2 == 1),
        region("page_size 16", lambda v, i: v.shape[1] == 16),
    ),
)
V_PAGES_ARG = Arg("v_pages", "float array (P, page_size, Hkv, Kv), k_pages' P, page_size, Hkv")


def _used(i: Mapping[str, Any]) -> list[np.ndarray]:
    """Each sequence's pages in use."""
    page = _page(i)
    return [
        row[: -(-int(L) // page)] for row, L in zip(i["block_table"], i["cache_lens"], strict=True)
    ]


def _in_use(i: Mapping[str, Any]) -> int:
    return len({int(p) for row in _used(i) for p in row})


def _out_of_order(i: Mapping[str, Any]) -> bool:
    return any(len(row) > 1 and bool((np.diff(row) != 1).any()) for row in _used(i))


TABLE_ARG = Arg(
    "block_table",
    "int array (B, max_pages): the pages in use name pages in [0, P); the rest are ignored",
    kind="other",
    regions=(
        region("more physical pages than in use", lambda v, i: i["k_pages"].shape[0] > _in_use(i)),
        region("pages out of physical order", lambda v, i: _out_of_order(i)),
    ),
)
LENS_ARG = Arg(
    "cache_lens",
    "int array (B,), T <= cache_lens[b] <= max_pages x page_size; the T new tokens included",
    kind="other",
    perturb=lambda v, i: v + (v + 1 <= i["block_table"].shape[1] * _page(i)),
    regions=(
        region(
            "= T (the chunk is the whole cache)", lambda v, i: bool((v == i["q"].shape[2]).any())
        ),
        region("a full last page", lambda v, i: bool((v % _page(i) == 0).any())),
        region("a partial last page", lambda v, i: bool((v % _page(i) != 0).any())),
        region("lengths differ across the batch", lambda v, i: len(set(v.tolist())) > 1),
    ),
)
SCALE_ARG = Arg("scale", "None (1/sqrt(K)) or any finite real", kind="number", default=None)
CAUSAL_ARG = Arg(
    "causal",
    "True (bottom-right: query t sees keys <= cache_lens - T + t) or False",
    kind="flag",
    default=True,
    regions=(region("True", lambda v, i: v is True), region("False", lambda v, i: v is False)),
)
WINDOW_ARG = Arg(
    "window",
    "None or (left, right) ints >= -1 around each query's position, -1 unbounded",
    kind="other",
    default=None,
    regions=(
        region("None", lambda v, i: v is None),
        region(
            "left 0 or 1 (a page boundary inside)", lambda v, i: v is not None and 0 <= v[0] <= 1
        ),
    ),
)


def _bad(change: Any, variant: Paging = Paging(prefill=True)) -> Any:
    return lambda data, dtype: change(draw_paged(data, dtype, variant))


def _column0(table: np.ndarray, page: int) -> np.ndarray:
    out = np.array(table)
    out[:, 0] = page
    return out


def _table_outside(i: dict[str, Any]) -> dict[str, Any]:
    table = np.array(i["block_table"])
    table[0, 0] = i["k_pages"].shape[0]  # page P does not exist
    return {**i, "block_table": table}


def _v_page_differs(i: dict[str, Any]) -> dict[str, Any]:
    return {**i, "v_pages": np.concatenate([i["v_pages"], i["v_pages"][:, :1]], axis=1)}


PAGED_BAD = (
    ("table_page_outside", "a page in use numbered P", _table_outside),
    (
        "table_page_negative",
        "a page in use numbered -1",
        lambda i: {**i, "block_table": _column0(i["block_table"], -1)},
    ),
    (
        "length_past_capacity",
        "cache_lens[0] = max_pages x page_size + 1",
        lambda i: _first(i, "cache_lens", i["block_table"].shape[1] * _page(i) + 1),
    ),
    (
        "length_below_T",
        "cache_lens[0] = T - 1",
        lambda i: _first(i, "cache_lens", i["q"].shape[2] - 1),
    ),
    (
        "float_table",
        "block_table a float array",
        lambda i: {**i, "block_table": i["block_table"].astype(np.float64)},
    ),
    ("v_page_size_differs", "v_pages with one slot more", _v_page_differs),
    ("window_below_minus_one", "window (-2, 0)", lambda i: {**i, "window": (-2, 0)}),
    ("nan_scale", "scale NaN", lambda i: {**i, "scale": float("nan")}),
)

PAGED_ATTENTION = Component(
    name="paged_attention",
    family="attention",
    shapes="q (B, Hq, T, K), k_pages (P, page, Hkv, K), v_pages (P, page, Hkv, Kv), block_table "
    "(B, max_pages), cache_lens (B,) -> (B, Hq, T, Kv)",
    error_scale=paged_error_scale,
    args=(Q_ARG, K_PAGES_ARG, V_PAGES_ARG, TABLE_ARG, LENS_ARG, SCALE_ARG, CAUSAL_ARG, WINDOW_ARG),
    draw=draw_paged,
    variants=VARIANTS,
    bad_inputs=tuple(BadInput(n, d, _bad(c)) for n, d, c in PAGED_BAD),
)


def _moved_pages(i: Mapping[str, Any], perm: np.ndarray) -> dict[str, Any]:
    """The same cache with physical page p moved to perm[p] and the table renumbered."""
    out = dict(i)
    for name in ("k_pages", "v_pages"):
        moved = np.empty_like(i[name])
        moved[perm] = i[name]
        out[name] = moved
    out["block_table"] = perm[i["block_table"]].astype(i["block_table"].dtype)
    return out


@prop(PAGED_ATTENTION, variants=(Paging(), Paging(prefill=True, window=True)), dtypes=SEMANTIC)
def pages_may_move(subject: Subject, data: st.DataObject, variant: Paging) -> None:
    """Any permutation of the physical pages, the table renumbered to match, gives the same
    output."""
    inputs = subject.draw(data, variant)
    rng = np.random.default_rng(data.draw(seeds(), label="perm_seed"))
    perm = rng.permutation(inputs["k_pages"].shape[0])
    base, moved = subject.case(inputs), subject.case(_moved_pages(inputs, perm))
    base.assert_equivalent(base.got, moved, "pages permuted, table renumbered")


def repaged(i: Mapping[str, Any], page: int) -> dict[str, Any]:
    """The same caches laid out in pages of another size, in order."""
    lens = [int(x) for x in i["cache_lens"]]
    used = [-(-L // page) for L in lens]
    table = np.zeros((len(lens), max(used)), np.int32)
    start = 0
    for b, n in enumerate(used):
        table[b, :n] = np.arange(start, start + n)
        start += n
    out = {**i, "block_table": table}
    for name in ("k_pages", "v_pages"):
        pages = np.zeros((max(start, 1), page, *i[name].shape[2:]), i[name].dtype)
        for b, L in enumerate(lens):
            seq = R.layouts.gather_pages(i[name], i["block_table"][b], L)  # (L, H, .)
            for s in range(L):
                pages[table[b, s // page], s % page] = seq[s]
        out[name] = pages
    return out


@prop(PAGED_ATTENTION, variants=(Paging(prefill=True), Paging(window=True)), dtypes=SEMANTIC)
def page_size_is_free(subject: Subject, data: st.DataObject, variant: Paging) -> None:
    """The same caches in pages of another size (1, 7 or 16 tokens) give the same output."""
    inputs = subject.draw(data, variant)
    page = data.draw(st.sampled_from([1, 7, 16]), label="other_page_size")
    base, other = subject.case(inputs), subject.case(repaged(inputs, page))
    base.assert_equivalent(base.got, other, f"page_size {_page(inputs)} vs {page}")


@prop(PAGED_ATTENTION, variants=(Paging(), Paging(prefill=True, causal=False)), dtypes=SEMANTIC)
def paged_equals_the_contiguous_cache(
    subject: Subject, data: st.DataObject, variant: Paging
) -> None:
    """Each sequence's output equals the same adapter's variant_attention over its cache gathered
    contiguously."""
    inputs = subject.draw(data, variant)
    paged = subject.case(inputs)
    flat = subject.sibling("variant_attention")
    for b in range(inputs["q"].shape[0]):
        one = flat.case(contiguous(inputs, b))
        what = f"sequence {b} vs its contiguous cache"
        subject.check(compare(paged.got[b : b + 1], one.got, paged.bound + one.bound, what), inputs)


# paged_cache_write
def draw_write(data: st.DataObject, dtype: DType, variant: Paging | str | None) -> dict[str, Any]:
    """Pages, a table with room for the new tokens, the lengths before the write (0 included), and
    new (B, T, H, K)."""
    v = Paging.parse(variant)
    i = draw_paged(data, dtype, v)
    T = i["q"].shape[2]
    before = np.array(
        [data.draw(st.integers(0, int(L) - T), label="len_before") for L in i["cache_lens"]],
        np.int32,
    )
    new = data.draw(arrays((len(before), T, *i["k_pages"].shape[2:]), dtype), label="new")
    return {
        "pages": i["k_pages"],
        "block_table": i["block_table"],
        "cache_lens": before,
        "new": new,
    }


def _writes_past(i: dict[str, Any]) -> dict[str, Any]:
    cap = i["block_table"].shape[1] * i["pages"].shape[1]
    return _first(i, "cache_lens", cap - i["new"].shape[1] + 1)


def _shared_slot(i: dict[str, Any]) -> dict[str, Any]:
    """Pages of one slot and a table naming page 0 everywhere: the T >= 2 new tokens of a
    sequence all land on one slot."""
    B, T = i["new"].shape[:2]
    return {
        **i,
        "pages": np.ascontiguousarray(i["pages"][:, :1]),
        "block_table": np.zeros((B, T), np.int32),
        "cache_lens": np.zeros(B, np.int32),
    }


def _first(i: dict[str, Any], key: str, first: int) -> dict[str, Any]:
    """i with entry 0 of the (B,) array at key replaced."""
    return {**i, key: np.r_[first, i[key][1:]].astype(np.int32)}


WRITE_BAD = (
    ("writes_past_capacity", "cache_lens[0] + T past max_pages x page_size", _writes_past),
    ("negative_length", "cache_lens[0] = -1", lambda i: _first(i, "cache_lens", -1)),
    (
        "new_heads_differ",
        "new with one more head",
        lambda i: {**i, "new": np.concatenate([i["new"], i["new"][:, :, :1]], axis=2)},
    ),
    (
        "float_lengths",
        "cache_lens a float array",
        lambda i: {**i, "cache_lens": i["cache_lens"].astype(np.float64)},
    ),
    (
        "table_page_outside",
        "every table entry page P",
        lambda i: {**i, "block_table": np.full_like(i["block_table"], i["pages"].shape[0])},
    ),
    ("shared_slot", "two new tokens mapped to one slot", _shared_slot),
)


def _write_bad(change: Any) -> Any:
    return lambda data, dtype: change(draw_write(data, dtype, Paging(prefill=True)))


def _crosses_a_page(v: np.ndarray, i: Mapping[str, Any]) -> bool:
    page = i["pages"].shape[1]
    return bool(((v % page) + i["new"].shape[1] > page).any())


PAGED_CACHE_WRITE = Component(
    name="paged_cache_write",
    family="attention",
    shapes="pages (P, page, H, K), block_table (B, max_pages), cache_lens (B,), new (B, T, H, K) "
    "-> (P, page, H, K)",
    error_scale=lambda i: 0.0,  # a copy: exact
    args=(
        Arg("pages", "float array (P, page_size, H, K)"),
        Arg(
            "block_table",
            "int array (B, max_pages); the pages written to name pages in [0, P)",
            kind="other",
        ),
        Arg(
            "cache_lens",
            "int array (B,) >= 0, the lengths before the write; cache_lens + T <= capacity",
            kind="other",
            perturb=lambda v, i: np.maximum(v - 1, 0) if (v > 0).any() else None,
            regions=(
                region("0 (an empty cache)", lambda v, i: bool((v == 0).any())),
                region("a write that crosses a page boundary", _crosses_a_page),
            ),
        ),
        Arg("new", "float array (B, T, H, K), pages' H, K and dtype"),
    ),
    draw=draw_write,
    variants=(Paging(), Paging(prefill=True)),
    bad_inputs=tuple(BadInput(n, d, _write_bad(c)) for n, d, c in WRITE_BAD),
)


@prop(PAGED_CACHE_WRITE, variants=(Paging(prefill=True),))
def a_refused_write_writes_nothing(subject: Subject, data: st.DataObject, variant: Paging) -> None:
    """A write past the table's capacity is refused, and the pages passed in are unchanged: an
    implementation that writes in place into a shared buffer must check before it writes."""
    inputs = _writes_past(subject.draw(data, variant))
    before = inputs["pages"].copy()
    try:
        subject.fn(**inputs)
    except Exception:
        pass
    else:
        subject.fail(inputs, "accepted a write past the table's capacity instead of raising")
    if not np.array_equal(inputs["pages"], before):
        changed = np.argwhere(inputs["pages"] != before)[0]
        subject.fail(inputs, f"a refused write modified the input pages, first at {tuple(changed)}")
