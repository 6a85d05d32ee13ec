"""Timing rules shared by the benchmarks: what is timed, how often, and the independent check.

- Inputs are on the device before any timing (benchmarks/backends.py prepares them).
- The first call (jit compilation, autotuning, lazy initialisation) is timed on its own and
excluded.
- Every timed call is synchronised: the host clock stops only when the device has finished.
- Warm-up rounds precede the timed rounds; rounds are sized to a time budget, at least MIN_ROUNDS.
- The harness (pytest-benchmark's pedantic mode) is checked against an independent timer: CUDA
events
  for torch on a GPU (plus ``triton.testing.do_bench`` where triton is installed), torch's own
  ``torch.utils.benchmark.Timer`` for torch on a CPU, and ``timeit`` (garbage collector off, its own
  loop) for numpy and jax.
"""

from __future__ import annotations

import statistics
import time
import timeit
from typing import Any

from benchmarks.backends import UNAVAILABLE_MESSAGES, Backend, Prepared, Unavailable
from benchmarks.cases import Case

MIN_ROUNDS = 5
MAX_ROUNDS = 2000
WARMUP_ROUNDS = 2


def timed_once(prepared: Prepared) -> tuple[float, Any]:
    """Seconds of one synchronised call, and its output."""
    t0 = time.perf_counter()
    out = prepared.call()
    prepared.sync(out)
    return time.perf_counter() - t0, out


def first_call(backend: Backend, case: Case, inputs: dict[str, Any]) -> tuple[Prepared, float, Any]:
    """Prepare ``backend`` for ``case`` and make its first call (compilation, autotuning, lazy
    init), timed apart: (prepared, seconds, output). A library saying it has no kernel for this here
    (or no memory) raises Unavailable; any other exception propagates, so a crashing backend fails
    its own test."""
    try:
        prepared = backend.prepare(case, inputs)
        seconds, out = timed_once(prepared)
    except Unavailable:
        raise
    except Exception as e:
        if any(m in str(e) for m in UNAVAILABLE_MESSAGES) or type(e).__name__ == "OutOfMemoryError":
            raise Unavailable(
                f"{backend.name} cannot run {case.id} here: {str(e).splitlines()[0][:200]}"
            ) from e
        raise
    return prepared, seconds, out


def steady_estimate(prepared: Prepared, calls: int = 3) -> float:
    """The fastest of a few synchronised calls after the first: what one call costs once warm."""
    return min(timed_once(prepared)[0] for _ in range(calls))


def plan_rounds(estimate_s: float, budget_s: float) -> int:
    """Timed rounds that fit the budget, between MIN_ROUNDS and MAX_ROUNDS."""
    return int(min(MAX_ROUNDS, max(MIN_ROUNDS, budget_s / max(estimate_s, 1e-9))))


def _cuda_events(prepared: Prepared, rounds: int) -> float:
    import torch

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(rounds)]
    for _ in range(WARMUP_ROUNDS):
        prepared.call()
    torch.cuda.synchronize()
    for start, end in zip(starts, ends, strict=True):
        start.record()
        prepared.call()
        end.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)) / 1e3


def _do_bench(prepared: Prepared) -> float | None:
    try:
        from triton.testing import do_bench
    except ImportError:
        return None
    return (
        float(do_bench(prepared.call, return_mode="median")) / 1e3
    )  # do_bench reports milliseconds


def _torch_timer(prepared: Prepared, budget_s: float) -> float:
    import torch
    from torch.utils import benchmark as tb

    # num_threads: torch.utils.benchmark defaults to 1 thread; the harness runs with torch's own
    # setting
    timer = tb.Timer(
        stmt="sync(call())",
        globals={"sync": prepared.sync, "call": prepared.call},
        num_threads=torch.get_num_threads(),
    )
    return float(timer.blocked_autorange(min_run_time=budget_s).median)


def _timeit(prepared: Prepared, estimate_s: float, budget_s: float) -> float:
    number = max(
        1, int(budget_s / 10 // max(estimate_s, 1e-9))
    )  # ~10 repeats of `number` calls each
    runs = timeit.Timer(lambda: prepared.sync(prepared.call())).repeat(
        repeat=max(3, min(10, plan_rounds(estimate_s, budget_s))), number=number
    )
    return statistics.median(runs) / number


def independent(
    prepared: Prepared, device: str, estimate_s: float, budget_s: float
) -> dict[str, float | str]:
    """The median seconds per call by a timer that is not the harness: {"timer": name, "median_s":
    t, ...}."""
    if prepared.library == "torch" and device == "cuda":
        out: dict[str, float | str] = {
            "timer": "cuda-events",
            "median_s": _cuda_events(prepared, plan_rounds(estimate_s, budget_s)),
        }
        bench = _do_bench(prepared)
        if bench is not None:
            out["do_bench_median_s"] = bench
        return out
    if prepared.library == "torch":
        return {"timer": "torch.utils.benchmark", "median_s": _torch_timer(prepared, budget_s)}
    return {"timer": "timeit", "median_s": _timeit(prepared, estimate_s, budget_s)}


def relative_difference(harness_s: float, independent_s: float) -> float:
    """(harness - independent) / independent: positive when the harness reads slower."""
    return (harness_s - independent_s) / independent_s
