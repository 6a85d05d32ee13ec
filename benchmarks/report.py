"""The benchmark report: ``python -m benchmarks.report RESULTS.json`` writes BENCHMARKS.md and PNG
plots beside it.

From pytest-benchmark's JSON (tests/benchmarks/test_speed.py fills each record's extra_info):
throughput (TFLOP/s for compute-bound components, GB/s for memory-bound ones) as a percentage of the
peak measured in the same run on the same device (a large matmul per dtype, a device-to-device
copy), with the paper peak beside it; the harness against the independent timer; the harness's own
overhead; plots of throughput vs sequence length with the roofline, and of time per sequence vs
length on log-log axes with the fitted growth exponent.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Dense paper peaks (TFLOP/s per dtype, memory TB/s) for the GPUs this project is lent; a measured
# peak is the roofline, this is printed beside it. NVIDIA's H100/H200 datasheets; fp32 is without
# TF32.
PAPER_PEAKS: dict[str, dict[str, float]] = {
    "H100 80GB HBM3": {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9, "TB/s": 3.35},
    "H100 PCIe": {"bfloat16": 756.0, "float16": 756.0, "float32": 51.2, "TB/s": 2.0},
    "H200": {"bfloat16": 989.4, "float16": 989.4, "float32": 66.9, "TB/s": 4.8},
}
# Within this of the independent timer for kernels longer than 1 ms (the acceptance rule).
TIMER_AGREEMENT = 0.02
LONG_KERNEL_S = 1e-3


@dataclass(frozen=True)
class Row:
    name: str
    info: dict[str, Any]
    median_s: float
    iqr_s: float = 0.0  # the harness's own spread: differences below it are this machine's noise

    def __getattr__(self, key: str) -> Any:
        try:
            return self.info[key]
        except KeyError as e:
            raise AttributeError(key) from e

    @property
    def throughput(self) -> float:
        """TFLOP/s (compute-bound) or GB/s (memory-bound)."""
        return (
            self.info["flops"] / self.median_s / 1e12
            if self.info["bound"] == "compute"
            else self.info["bytes"] / self.median_s / 1e9
        )

    @property
    def timer_difference(self) -> float:
        return (self.median_s - self.info["independent_median_s"]) / self.info[
            "independent_median_s"
        ]


def load(path: Path) -> tuple[dict[str, Any], list[Row]]:
    data = json.loads(path.read_text())
    rows = [
        Row(b["name"], b.get("extra_info", {}), b["stats"]["median"], b["stats"].get("iqr", 0.0))
        for b in data["benchmarks"]
        if b.get("stats")
    ]
    return data, [r for r in rows if "component" in r.info]


def paper_peak(device_name: str, key: str) -> float | None:
    for name, peaks in PAPER_PEAKS.items():
        if name in device_name:
            return peaks.get(key)
    return None


def measured_peaks(rows: list[Row]) -> dict[tuple[str, str], float]:
    """(device, dtype) -> matmul TFLOP/s, and (device, "copy") -> GB/s, each the best backend's."""
    peaks: dict[tuple[str, str], float] = {}
    for r in rows:
        if r.component in ("matmul", "copy"):
            key = (r.device, r.dtype if r.component == "matmul" else "copy")
            peaks[key] = max(peaks.get(key, 0.0), r.throughput)
    return peaks


def peak_for(row: Row, peaks: dict[tuple[str, str], float]) -> float | None:
    """The measured peak a row's throughput is a percentage of: its dtype's matmul, or the copy."""
    if row.bound == "memory":
        return peaks.get((row.device, "copy"))
    return peaks.get((row.device, row.dtype))


def growth_exponent(lengths: list[int], seconds: list[float]) -> float | None:
    """The slope of log(time) against log(length), least squares; None with fewer than 3 points."""
    if len(lengths) < 3:
        return None
    return float(np.polyfit(np.log(lengths), np.log(seconds), 1)[0])


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _group_key(r: Row) -> tuple:
    d = r.dims
    return (
        (r.device, r.dtype, d.get("K"), r.causal, r.info.get("variant", ""))
        if r.component == "scaled_dot_product_attention"
        else (r.device, r.dtype, r.component)
    )


def _length(r: Row) -> int:
    d = r.dims
    return d.get("T") or d.get("R")


def _per_sequence(r: Row) -> float:
    """Seconds per sequence: the sweep holds B T fixed, so one sequence's time shows the growth in
    T."""
    return r.median_s / r.dims.get("B", 1)


def tables(rows: list[Row], peaks: dict[tuple[str, str], float]) -> list[str]:
    """One table per attention (device, dtype, K, causal, variant) and per memory-bound (device,
    component)."""
    out: list[str] = []
    groups: dict[tuple, list[Row]] = defaultdict(list)
    for r in rows:
        if r.component not in ("matmul", "copy", "harness_overhead"):
            groups[_group_key(r)].append(r)
    for key, members in sorted(groups.items(), key=lambda kv: str(kv[0])):
        backends = sorted({r.backend for r in members})
        unit = "TFLOP/s" if members[0].bound == "compute" else "GB/s"
        title = (
            f"attention, {key[0]}, {key[1]}, K = {key[2]}, {'causal' if key[3] else 'not causal'}"
            + (f", {key[4]}" if key[4] else "")
            if members[0].component == "scaled_dot_product_attention"
            else f"{key[2]}, {key[0]}, {key[1]}"
        )
        attention = unit == "TFLOP/s"
        out += [
            f"### {title}",
            "",
            f"{unit} (% of the measured "
            f"peak{'' if attention else '; above 100%: the working set fits in a cache'}) "
            "and median time per call; exponent: "
            f"{'time per sequence ~ T^p' if attention else 'time ~ rows^p'}",
            "",
        ]
        out += ["| size | " + " | ".join(backends) + " |", "|---|" + "---|" * len(backends)]
        by_size: dict[tuple, dict[str, Row]] = defaultdict(dict)
        for r in members:
            by_size[tuple(sorted(r.dims.items()))][r.backend] = r
        for size, cells in sorted(
            by_size.items(), key=lambda kv: dict(kv[0]).get("T") or dict(kv[0]).get("R")
        ):
            label = ", ".join(f"{k}={v}" for k, v in size)
            row = []
            for b in backends:
                r = cells.get(b)
                peak = peak_for(r, peaks) if r else None
                pct = f" ({100 * r.throughput / peak:.0f}%)" if r and peak else ""
                row.append(f"{r.throughput:.3g}{pct}, {r.median_s * 1e3:.3g} ms" if r else "-")
            out.append(f"| {label} | " + " | ".join(row) + " |")
        fits = []
        for b in backends:
            pts = sorted((_length(r), _per_sequence(r)) for r in members if r.backend == b)
            fits.append(_fmt(growth_exponent([p[0] for p in pts], [p[1] for p in pts]), ".2f"))
        out += ["| exponent p | " + " | ".join(fits) + " |", ""]
    return out


def timer_section(rows: list[Row]) -> list[str]:
    timed = [r for r in rows if "independent_median_s" in r.info]
    long = [r for r in timed if r.median_s > LONG_KERNEL_S]
    worst = max(long, key=lambda r: abs(r.timer_difference), default=None)
    within = sum(abs(r.timer_difference) <= TIMER_AGREEMENT for r in long)
    spread = [r.iqr_s / r.median_s for r in long]
    in_noise = sum(
        abs(r.timer_difference) <= max(TIMER_AGREEMENT, r.iqr_s / r.median_s) for r in long
    )
    overhead = [r for r in rows if r.component == "harness_overhead"]
    median_diff = _fmt(
        float(np.median([abs(r.timer_difference) for r in long])) if long else None, ".1%"
    )
    largest = (
        f"largest difference {worst.timer_difference:+.1%} ({worst.name})."
        if worst
        else "none measured."
    )
    lines = [
        "## Harness vs independent timer",
        "",
        f"Kernels longer than {LONG_KERNEL_S * 1e3:g} ms: {within} of {len(long)} within "
        f"{TIMER_AGREEMENT:.0%} "
        f"of the independent timer; {largest}",
        f"Median |difference| over those: {median_diff}; the harness's own spread (IQR / median of "
        "its rounds) has "
        f"median {_fmt(float(np.median(spread)) if spread else None, '.1%')}, and {in_noise} of "
        f"{len(long)} differ by "
        f"less than the larger of {TIMER_AGREEMENT:.0%} and that spread.",
        "Independent timers: "
        + ", ".join(sorted({f"{r.library}/{r.device}: {r.independent_timer}" for r in timed}))
        + ".",
        "",
        "Harness overhead per call (a call that does nothing, synchronised as that library's calls "
        "are): "
        + ", ".join(f"{r.library}/{r.device} {r.median_s * 1e6:.2f} us" for r in overhead)
        + ".",
        "",
    ]
    return lines


def peaks_section(rows: list[Row], peaks: dict[tuple[str, str], float]) -> list[str]:
    lines = [
        "## Measured peaks (same run, same device)",
        "",
        "| device | probe | measured | paper |",
        "|---|---|---|---|",
    ]
    names = {r.device: r.device_name for r in rows}
    for (device, what), value in sorted(peaks.items()):
        if what == "copy":
            paper = paper_peak(names[device], "TB/s")
            lines.append(
                f"| {names[device]} | device-to-device copy | {value:.1f} GB/s | "
                f"{_fmt(paper and paper * 1e3, '.0f')} GB/s |"
            )
        else:
            lines.append(
                f"| {names[device]} | {what} matmul | {value:.3g} TFLOP/s | "
                f"{_fmt(paper_peak(names[device], what))} TFLOP/s |"
            )
    return [*lines, ""]


def markdown(data: dict[str, Any], rows: list[Row]) -> str:
    machine = data.get("machine_info", {})
    ours = machine.get("transformer_conformance", {})
    peaks = measured_peaks(rows)
    head = [
        "# Benchmarks",
        "",
        "Generated by `python -m benchmarks.report` from pytest-benchmark's JSON "
        f"({data.get('datetime', '?')}).",
        f"CPU: {ours.get('cpu_model', machine.get('cpu', {}).get('brand_raw', '?'))}, "
        f"{ours.get('cpu_count', '?')} cores. "
        f"GPU: {json.dumps(ours.get('gpu'))}.",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in ours.get("libraries", {}).items()) + ".",
        f"Python {machine.get('python_version', '?')}; commit "
        f"{data.get('commit_info', {}).get('id', '?')[:10]}.",
        "",
        "Every number is the median of synchronised calls after a separately timed first call and "
        "warm-up; every "
        "kernel's output was spot-checked against the oracle first (benchmarks/check.py).",
        "",
    ]
    return (
        "\n".join(
            head
            + peaks_section(rows, peaks)
            + timer_section(rows)
            + ["## Results", ""]
            + tables(rows, peaks)
        )
        + "\n"
    )


def plots(rows: list[Row], out: Path) -> list[Path]:
    """Throughput vs length with the roofline, and time per sequence vs length (log-log) with fitted
    exponents."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peaks, written = measured_peaks(rows), []
    attention = [r for r in rows if r.component == "scaled_dot_product_attention"]
    memory = [r for r in rows if r.info.get("bound") == "memory" and r.component != "copy"]
    panels: dict[tuple, dict[tuple, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for r in attention:
        panels[("attention", r.device, r.dtype)][
            (r.dims["K"], r.causal, r.info.get("variant", ""))
        ].append(r)
    for r in memory:
        panels[("memory", r.device, r.dtype)][(r.component, None)].append(r)
    for (kind, device, dtype), subs in sorted(panels.items()):
        keys = sorted(subs, key=str)
        for what in ("throughput", "time"):
            fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
            for ax, key in zip(axes[0], keys, strict=True):
                _panel(ax, subs[key], what, peaks, key, kind)
            fig.suptitle(f"{kind} on {device}, {dtype}")
            fig.tight_layout()
            path = out / f"{kind}_{what}_{device}_{dtype}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            written.append(path)
    return written


def _panel(ax: Any, members: list[Row], what: str, peaks: dict, key: tuple, kind: str) -> None:
    for backend in sorted({r.backend for r in members}):
        pts = sorted(((_length(r), r) for r in members if r.backend == backend), key=lambda p: p[0])
        xs = [p[0] for p in pts]
        if what == "throughput":
            ax.plot(xs, [p[1].throughput for p in pts], "o-", label=backend)
        else:
            ys = [_per_sequence(p[1]) for p in pts]
            fit = growth_exponent(xs, ys)
            ax.plot(xs, ys, "o-", label=f"{backend} (p = {_fmt(fit, '.2f')})")
    sample = members[0]
    peak = peak_for(sample, peaks)
    if what == "throughput" and peak:
        xs = sorted({_length(r) for r in members})
        if sample.bound == "compute":  # roofline: min(compute peak, intensity x bandwidth)
            bw = peaks.get((sample.device, "copy"))
            ref = {_length(r): r for r in members}
            roof = [min(peak, ref[x].flops / ref[x].bytes * bw / 1e3) if bw else peak for x in xs]
        else:
            roof = [peak] * len(xs)
        ax.plot(xs, roof, "k--", label="roofline (measured peaks)")
    ax.set_xscale("log", base=2)
    if what == "time":
        ax.set_yscale("log")
    unit = "TFLOP/s" if sample.bound == "compute" else "GB/s"
    ax.set_ylabel(
        unit
        if what == "throughput"
        else ("seconds per sequence" if kind == "attention" else "seconds")
    )
    ax.set_xlabel("sequence length T = S" if kind == "attention" else "rows")
    ax.set_title(
        f"K = {key[0]}, {'causal' if key[1] else 'not causal'}" + (f", {key[2]}" if key[2] else "")
        if kind == "attention"
        else str(key[0])
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON (--benchmark-json)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder for BENCHMARKS.md and the plots (default: beside the JSON)",
    )
    args = parser.parse_args(argv)
    out = args.out or args.results.parent
    out.mkdir(parents=True, exist_ok=True)
    data, rows = load(args.results)
    (out / "BENCHMARKS.md").write_text(markdown(data, rows))
    written = plots(rows, out)
    print(f"wrote {out / 'BENCHMARKS.md'} and {len(written)} plots")


if __name__ == "__main__":
    main()
