"""Tests of the benchmark machinery (benchmarks/), cheap enough for CI, which never runs the
benchmarks.

The cost models count what the spec's masks say; every CPU kernel the benchmarks time computes the
component (spot-checked by the oracle at a tiny size), and a wrong one is refused; the report
computes percentages of the measured peak and fits growth exponents from a synthetic run.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import cost, report, timing
from benchmarks.backends import BACKENDS, Prepared, Unavailable
from benchmarks.cases import ATTENTION, Case, cpu_sweep, gpu_sweep
from benchmarks.check import spot_check
from reference.masks import causal_mask


@given(T=st.integers(1, 40), S=st.integers(1, 40), causal=st.booleans())
def test_visible_pairs_count_the_causal_mask(T: int, S: int, causal: bool) -> None:
    """The FLOP model's pair count is the number of True entries of the spec's top-left causal
    mask."""
    expected = int(causal_mask(T, S, "top_left").sum()) if causal else T * S
    assert cost.visible_pairs(T, S, causal) == expected, f"T={T}, S={S}, causal={causal}"


def test_attention_flops_is_four_bhtsk_and_causal_about_half() -> None:
    B, H, T, K = 2, 3, 64, 16
    full = cost.scaled_dot_product_attention(B, H, T, T, K, 2, causal=False)
    half = cost.scaled_dot_product_attention(B, H, T, T, K, 2, causal=True)
    assert full.flops == 4 * B * H * T * T * K
    assert half.flops == 4 * B * H * K * T * (T + 1) // 2, (
        "causal counts the attended pairs, T (T + 1) / 2"
    )
    assert full.bytes == B * H * 4 * T * K * 2, "q, k, v read and the output written once"


def test_sweeps_cover_what_the_issue_asks() -> None:
    gpu = [c for c in gpu_sweep() if c.component == ATTENTION]
    lengths = {c.size["T"] for c in gpu}
    assert {512, 1024, 2048, 4096, 8192, 16384} <= lengths
    assert any(T % 2 for T in lengths), "no odd length: no partial last tile is timed"
    assert {c.size["K"] for c in gpu} == {64, 128} and {c.causal for c in gpu} == {False, True}
    assert {c.dtype for c in gpu} == {"bfloat16", "float16"}
    assert all(c.device == "cpu" for c in cpu_sweep())
    for sweep in (cpu_sweep(), gpu_sweep()):  # issue 16: GQA, windowed and soft-capped points
        assert {"gqa", "window", "softcap"} <= {v for c in sweep for v in c.variants}


def _tiny(component: str, causal: bool = False) -> Case:
    dims = {ATTENTION: (("B", 2), ("H", 2), ("T", 24), ("S", 24), ("K", 8))}.get(
        component, (("R", 40), ("N", 16))
    )
    if component == "layer_norm":
        dims = (("R", 40), ("D", 16))
    if component == "sinusoidal_positional_encoding":
        dims = (("T", 40), ("D", 16))
    return Case(component, "cpu", "float32", dims, causal)


# The variants at a tiny size: 4 query heads over 2 key/value heads, a window of 5 keys back, a cap
# of 2 (scores of this size reach it, so a kernel that ignores it is caught)
_TINY_VARIANTS = {
    "gqa": {"kv_heads": 2},
    "window": {"window": 5},
    "softcap": {"softcap": 2.0},
    "gqa+window+softcap": {"kv_heads": 2, "window": 5, "softcap": 2.0},
}


def _tiny_variant(name: str, causal: bool = True) -> Case:
    dims = (("B", 2), ("H", 4), ("T", 24), ("S", 24), ("K", 8))
    return Case(ATTENTION, "cpu", "float32", dims, causal, **_TINY_VARIANTS[name])  # type: ignore[arg-type]


# Backends that compile each case (torch.compile: ~8 s cold on this CPU) get one case, the one with
# every variant they express.
_COMPILING = {"torch-flex"}
_CPU_POINTS = [
    *(
        pytest.param(b, _tiny(c, causal), id=f"{b.name}-{c}{'-causal' if causal else ''}")
        for b in BACKENDS
        if "cpu" in b.devices and b.name not in _COMPILING
        for c in b.components
        for causal in ((False, True) if c == ATTENTION else (False,))
    ),
    *(
        pytest.param(b, _tiny_variant(v), id=f"{b.name}-{ATTENTION}-causal-{v}")
        for b in BACKENDS
        if "cpu" in b.devices and ATTENTION in b.components
        for v in _TINY_VARIANTS
        if _tiny_variant(v).variants <= b.variants
        and (b.name not in _COMPILING or _tiny_variant(v).variants == b.variants)
    ),
]


@pytest.mark.parametrize(("backend", "case"), _CPU_POINTS)
def test_timed_kernels_compute_the_component(backend, case: Case) -> None:
    """What a benchmark times is the component: its output passes the oracle's spot check."""
    if importlib.util.find_spec(backend.library) is None:
        pytest.skip(f"{backend.library} is not installed")
    inputs = case.inputs()
    try:
        prepared, _, out = timing.first_call(backend, case, inputs)
    except Unavailable as e:
        pytest.skip(str(e))
    comparison = spot_check(case, inputs, prepared.to_numpy(out))
    assert comparison is not None and comparison.ok, (
        comparison.report() if comparison else "no check"
    )


def test_spot_check_refuses_a_wrong_kernel() -> None:
    """A kernel scaling by 1/K instead of 1/sqrt(K) is caught before its speed could be reported."""
    import reference

    case = _tiny(ATTENTION)
    inputs = case.inputs()
    K = case.size["K"]
    wrong = reference.scaled_dot_product_attention(
        inputs["q"], inputs["k"], inputs["v"], scale=1.0 / K
    )
    comparison = spot_check(case, inputs, wrong)
    assert comparison is not None and not comparison.ok, (
        f"the planted scale bug passed: {comparison}"
    )


@pytest.mark.parametrize("variant", ["window", "softcap", "gqa"])
def test_spot_check_refuses_a_kernel_without_the_variant(variant: str) -> None:
    """A kernel that ignores the window or the cap (plain causal attention), or maps the query heads
    to key/value heads interleaved (h % Hkv instead of h // G), is caught."""
    import reference

    case = _tiny_variant(variant)
    inputs = case.inputs()
    q, k, v = inputs["q"], inputs["k"], inputs["v"]
    if variant == "gqa":
        G = case.size["H"] // case.kv_heads
        k, v = np.tile(k, (1, G, 1, 1)), np.tile(v, (1, G, 1, 1))  # head h reads h % Hkv
    wrong = reference.scaled_dot_product_attention(q, k, v, causal="top_left")
    if variant == "gqa":  # the interleaving changes every head but 0, which the check reads
        wrong = wrong[:, ::-1]
    comparison = spot_check(case, inputs, np.ascontiguousarray(wrong))
    assert comparison is not None and not comparison.ok, (
        f"the planted {variant} bug passed: {comparison}"
    )


def test_visible_pairs_count_the_window_and_causal_masks() -> None:
    """The FLOP model's pair count under a window is the number of True entries of the spec's
    window mask (with the causal mask)."""
    from reference.variants import window_allowed

    for T, S, window in [(24, 24, 5), (7, 3, 1), (3, 7, 10), (16, 16, 0), (1, 1, 3)]:
        mask = window_allowed(T, S, (window, 0), "top_left") & causal_mask(T, S, "top_left")
        assert cost.visible_pairs(T, S, True, window) == int(mask.sum()), (T, S, window)
    full = cost.scaled_dot_product_attention(1, 8, 16, 16, 4, 2, False, kv_heads=2)
    assert full.flops == 4 * 8 * 16 * 16 * 4, "FLOPs are counted by query heads"
    assert full.bytes == (2 * 16 * 8 + 2 * 16 * 2) * 4 * 2, "k and v are read with Hkv heads"


def test_plan_rounds_fits_the_budget_within_its_limits() -> None:
    assert timing.plan_rounds(1.0, 0.5) == timing.MIN_ROUNDS
    assert timing.plan_rounds(1e-9, 10.0) == timing.MAX_ROUNDS
    assert timing.plan_rounds(0.125, 2.0) == 16


def test_timed_once_synchronises() -> None:
    events: list[str] = []
    prepared = Prepared(
        lambda: events.append("call") or "out",
        lambda out: events.append(f"sync {out}"),
        np.asarray,
        "numpy",
    )
    seconds, out = timing.timed_once(prepared)
    assert events == ["call", "sync out"] and out == "out" and seconds >= 0


def _record(name: str, median: float, **info: object) -> dict:
    extra = {"device": "cpu", "device_name": "test cpu", "independent_timer": "timeit", **info}
    return {"name": name, "stats": {"median": median}, "extra_info": extra}


def test_report_percentages_exponents_and_plots(tmp_path: Path) -> None:
    """A synthetic run: attention at half the matmul peak reads 50%; time ~ T^2 per sequence fits p
    = 2."""
    peak_tflops = 2.0
    matmul = cost.matmul(1000, 1000, 1000, 4)
    records = [
        _record(
            "mm",
            matmul.flops / (peak_tflops * 1e12),
            component="matmul",
            dtype="float32",
            bound="compute",
            flops=matmul.flops,
            bytes=matmul.bytes,
            independent_median_s=matmul.flops / (peak_tflops * 1e12),
            library="torch",
        ),
        _record(
            "copy",
            1.0,
            component="copy",
            dtype="float32",
            bound="memory",
            flops=0.0,
            bytes=10e9,
            independent_median_s=1.0,
            library="torch",
        ),
        _record("overhead", 1e-6, component="harness_overhead", library="torch"),
    ]
    for T in (128, 256, 512, 1024):
        B = 4096 // T
        c = cost.scaled_dot_product_attention(B, 1, T, T, 64, 4, False)
        seconds = c.flops / (
            peak_tflops / 2 * 1e12
        )  # half the peak; B T fixed, so time per sequence ~ T^2
        records.append(
            _record(
                f"a{T}",
                seconds,
                component=ATTENTION,
                backend="x",
                library="torch",
                dtype="float32",
                bound="compute",
                flops=c.flops,
                bytes=c.bytes,
                causal=False,
                dims={"B": B, "H": 1, "T": T, "S": T, "K": 64},
                independent_median_s=seconds,
            )
        )
    path = tmp_path / "benchmark.json"
    path.write_text(json.dumps({"benchmarks": records, "machine_info": {}, "datetime": "now"}))
    report.main([str(path)])
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "1 (50%)" in text, f"expected 1 TFLOP/s at 50% of a 2 TFLOP/s peak in:\n{text}"
    assert "| exponent p | 2.00 |" in text, text
    long = sum(
        r["stats"]["median"] > report.LONG_KERNEL_S and "independent_median_s" in r["extra_info"]
        for r in records
    )
    assert f"{long} of {long} within 2%" in text, text
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["attention_throughput_cpu_float32.png", "attention_time_cpu_float32.png"], pngs
    _, rows = report.load(path)
    p = report.growth_exponent([128, 256, 512], [1.0, 4.0, 16.0])
    assert math.isclose(p, 2.0), p
    assert len(rows) == len(records)
