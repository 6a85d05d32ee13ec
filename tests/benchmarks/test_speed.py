"""Backend speed, with pytest-benchmark: every backend x sweep point (benchmarks/cases.py).

Deselected from the default run (marker `benchmark`); `make bench` runs them and writes the report.
Each test: inputs placed on the device; the first call timed apart (compilation, autotuning) and
spot-checked against the oracle; warm-up; synchronised timed rounds; then an independent timer,
whose median is recorded beside the harness's (benchmarks/timing.py). GPU points skip where there is
no GPU.
"""

from __future__ import annotations

import importlib.util

import pytest

from benchmarks import timing
from benchmarks.backends import Backend, Prepared, Unavailable, for_case, torch_sync
from benchmarks.cases import Case, cpu_sweep, gpu_sweep, peak_cases
from benchmarks.check import spot_check
from benchmarks.machine import device_name

pytestmark = [
    pytest.mark.benchmark,
    # a test that fails before timing (a wrong kernel) must fail for that reason alone
    pytest.mark.filterwarnings(
        "ignore:Benchmark fixture was not used:pytest_benchmark.logger.PytestBenchmarkWarning"
    ),
]

# Seconds of timed rounds per point for the harness, and again for the independent timer.
BUDGET_S = {"cpu": 0.5, "cuda": 0.25}


def _points() -> list:
    cases = [*peak_cases("cpu"), *peak_cases("cuda"), *cpu_sweep(), *gpu_sweep()]
    return [pytest.param(c, b, id=f"{b.name}-{c.id}") for c in cases for b in for_case(c)]


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _prepare(case: Case, backend: Backend) -> tuple[Prepared, float, object, dict]:
    if importlib.util.find_spec(backend.library) is None:
        pytest.skip(f"{backend.library} is not installed")
    if case.device == "cuda" and not _cuda_available():
        pytest.skip("no CUDA device: GPU points run on a GPU machine")
    inputs = case.inputs()
    try:
        prepared, first_s, out = timing.first_call(
            backend, case, inputs
        )  # compile / autotune / lazy init: excluded
    except Unavailable as e:
        pytest.skip(str(e))
    return prepared, first_s, out, inputs


@pytest.mark.parametrize(("case", "backend"), _points())
def test_speed(benchmark, case: Case, backend: Backend) -> None:
    prepared, first_s, out, inputs = _prepare(case, backend)
    comparison = spot_check(case, inputs, prepared.to_numpy(out))
    if comparison is not None:
        assert comparison.ok, (
            f"{backend.name} computes {case.component} wrongly, so its speed is not reported: "
            f"{comparison.report()}"
        )
    del out
    estimate = timing.steady_estimate(prepared)
    budget = BUDGET_S[case.device]
    benchmark.pedantic(
        lambda: prepared.sync(prepared.call()),
        rounds=timing.plan_rounds(estimate, budget),
        iterations=1,
        warmup_rounds=timing.WARMUP_ROUNDS,
    )
    other = timing.independent(prepared, case.device, estimate, budget)
    cost = case.cost()
    benchmark.extra_info.update(
        component=case.component,
        backend=backend.name,
        library=backend.library,
        device=case.device,
        device_name=device_name(case.device),
        dtype=case.dtype,
        dims=case.size,
        causal=case.causal,
        variant=case.variant,  # "gqa4", "window256", "softcap50"; "" for plain attention
        flops=cost.flops,
        bytes=cost.bytes,
        bound=cost.bound,
        first_call_s=first_s,
        independent_timer=other["timer"],
        independent_median_s=other["median_s"],
        spot_check_error_over_allowed=None if comparison is None else comparison.ratio,
        **(
            {"do_bench_median_s": other["do_bench_median_s"]}
            if "do_bench_median_s" in other
            else {}
        ),
    )


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("library", ["numpy", "torch", "jax"])
def test_harness_overhead(benchmark, library: str, device: str) -> None:
    """What the harness adds per call: a call that does nothing, synchronised as that library's
    calls are."""
    if library == "numpy" and device == "cuda":
        pytest.skip("numpy has no GPU")
    if importlib.util.find_spec(library) is None:
        pytest.skip(f"{library} is not installed")
    if device == "cuda" and not _cuda_available():
        pytest.skip("no CUDA device: GPU points run on a GPU machine")
    done: object = object()
    sync = lambda out: out
    if library == "torch":
        sync = torch_sync(device)
    elif library == "jax":
        import jax

        sync, done = (
            jax.block_until_ready,
            jax.numpy.zeros(1),
        )  # an array on the default device, already computed
    prepared = Prepared(lambda: done, sync, lambda out: out, library)
    benchmark.pedantic(
        lambda: prepared.sync(prepared.call()),
        rounds=2000,
        iterations=1,
        warmup_rounds=timing.WARMUP_ROUNDS,
    )
    benchmark.extra_info.update(
        component="harness_overhead",
        backend=library,
        library=library,
        device=device,
        device_name=device_name(device),
    )
