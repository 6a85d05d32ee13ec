"""The conformance report: ``pytest --report DIR`` writes DIR/conformance.json and
DIR/CONFORMANCE.md.

JSON: one record per adapter x component x property[variant] x dtype (and per refused bad input):
outcome (pass / fail / deviation / deviation not seen / unsupported / skipped), examples run and how
many of them the adapter could not express, the observed error / allowed bound of every comparison
(``ratios``) and the worst, the declared reason or the failure's first lines with the command that
reruns it, plus the run: profile, seed, library versions, device. Tests collected but never run (a
run stopped by -x) are counted per cell as "not run". Markdown: the component x adapter matrix at a
glance, then every failure and deviation with its reason.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

LIBRARIES = (
    "numpy",
    "torch",
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "keras",
    "transformers",
    "ml_dtypes",
    "hypothesis",
    "pytest",
)
ORDER = ("fail", "deviation", "deviation not seen", "pass", "unsupported", "skipped")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def semantic_profile() -> dict[str, str]:
    """The conventions this run chose other than the spec's canonical ones (reference/semantics.py;
    empty: canonical)."""
    from reference.semantics import differs

    return differs()


def _profile_text(semantics: dict[str, str] | None) -> str:
    if not semantics:
        return "canonical"
    return ", ".join(f"`{k}={v}`" for k, v in semantics.items())


def _spec_version() -> str:
    from spec import SPEC_VERSION

    return SPEC_VERSION


def machine_speed() -> str:
    """A calibration for the run's timings: this process's float64 matmul rate at 512^3 (best of 5,
    ~0.1 s). The same commit's examples per second differ threefold between the hosts a cloud lends
    (measured on this project's machines: 15.6 against 47.2 GFLOP/s), so a time is read beside
    it."""
    import os
    import time

    import numpy as np

    a = np.random.default_rng(0).standard_normal((512, 512))
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return f"float64 matmul {2 * 512**3 / best / 1e9:.1f} GFLOP/s (512^3), {os.cpu_count()} cores"


def _device(device: str) -> str:
    """What --device ran on, in words."""
    if device == "cuda":
        try:
            import torch

            return f"cuda ({torch.cuda.get_device_name(0)})"
        except Exception as e:  # a report is still written
            return f"cuda (unknown: {type(e).__name__})"
    return f"cpu ({platform.machine()}, {platform.system()})"


def _failure_text(report: pytest.TestReport) -> str:
    """The conformance message (the E lines) and Hypothesis's reproduction line, if any."""
    text = report.longreprtext or ""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    keep = lines[:8] + [
        line for line in lines[8:] if line.startswith(("rerun exactly", "failing inputs saved"))
    ]
    return "\n".join(keep)


def _reason(report: pytest.TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return str(report.wasxfail).removeprefix("declared deviation: ")
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[-1]).removeprefix("Skipped: ")
    return ""


class Report:
    """Collects the controller's test reports; writes the files at the end of the session."""

    def __init__(self, directory: Path, config: pytest.Config, profile: str, chosen: Any):
        self.directory, self.config = directory, config
        self.profile, self.settings = profile, chosen
        self.records: list[dict[str, Any]] = []
        self.unmatched: dict[
            str, list[str]
        ] = {}  # adapter -> declared deviations that match no test
        self.collected: dict[tuple[str, str], int] = {}  # (component, adapter) -> tests collected

    def add(self, report: pytest.TestReport, outcome: str) -> None:
        props: dict[str, Any] = dict(report.user_properties)
        component, adapter, family, check, dtype = props["tcs"]
        ratios = props.get("tcs_ratios") or []
        worst = max(ratios, default=0.0)
        record = {
            "adapter": adapter,
            "component": component,
            "family": family,
            "check": check,
            "dtype": dtype,
            "outcome": outcome,
            "examples": props.get("tcs_examples", 0),
            "worst_error_over_allowed": worst if worst != float("inf") else "inf",
            "ratios": [r if r != float("inf") else "inf" for r in ratios],
            "seconds": round(report.duration, 3),
            "test": report.nodeid,
        }
        if props.get("tcs_errors"):
            record["errors"] = props["tcs_errors"]  # kernel scale: (observed, allowed) per example
        if props.get("tcs_unsupported"):
            record["unsupported_examples"] = props["tcs_unsupported"]
        if props.get("tcs_warnings"):
            record["warnings"] = props["tcs_warnings"]
        if props.get("tcs_concerns"):
            record["concerns"] = props["tcs_concerns"]
        if outcome == "fail":
            record["failure"] = _failure_text(report)
            if props.get("tcs_rerun"):
                record["rerun"] = props["tcs_rerun"]
        elif props.get("tcs_reason") or _reason(report):
            record["reason"] = props.get("tcs_reason") or _reason(report)
        self.records.append(record)

    def run_info(self) -> dict[str, Any]:
        seed = self.config.getoption("hypothesis_seed", None)
        return {
            "hypothesis_profile": self.profile,
            "max_examples": self.settings.max_examples,
            "derandomize": self.settings.derandomize,
            "seed": seed
            if seed is not None
            else ("derandomized" if self.settings.derandomize else "random per test"),
            "spec_version": _spec_version(),
            "semantics": semantic_profile(),
            "versions": versions(),
            "device": _device(self.config.getoption("device")),
            "machine_speed": machine_speed(),
            "adapters": sorted({r["adapter"] for r in self.records}),
            "command": "pytest " + " ".join(self.config.invocation_params.args),
            "unmatched_deviations": self.unmatched,
        }

    def write(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        run = self.run_info()
        run["not_run"] = not_run(self.collected, self.records)
        (self.directory / "conformance.json").write_text(
            json.dumps({"run": run, "results": self.records}, indent=1)
        )
        text = markdown(run, self.records)
        plot(self.records, self.directory / "observed_over_allowed.png")
        from transformer_conformance.kernel_report import kernel_section

        text += kernel_section(self.records, self.directory)
        (self.directory / "CONFORMANCE.md").write_text(text)


def not_run(collected: dict[tuple[str, str], int], records: list[dict[str, Any]]) -> dict[str, int]:
    """'component|adapter' -> tests collected but never reported (a run stopped early, -x)."""
    ran: dict[tuple[str, str], int] = defaultdict(int)
    for r in records:
        ran[(r["component"], r["adapter"])] += 1
    return {f"{c}|{a}": n - ran[(c, a)] for (c, a), n in collected.items() if n > ran[(c, a)]}


def cell_text(outcomes: dict[str, int], emphasis: bool = False, not_run: int = 0) -> str:
    """One matrix cell: the worst outcome of its tests with counts (bold in Markdown when not a
    pass), and how many of its tests never ran (a run stopped by -x): a cell is not judged on tests
    it skipped."""
    tail = f", {not_run} not run" if not_run else ""
    if not outcomes:
        return f"not run ({not_run})" if not_run else "-"
    total = sum(outcomes.values())
    worst = next(o for o in ORDER if outcomes.get(o))
    if worst == "pass":
        rest = outcomes.get("unsupported", 0)
        return f"pass ({outcomes['pass']})" + (f", {rest} unsupported" if rest else "") + tail
    if worst in ("unsupported", "skipped"):
        return f"{worst} ({outcomes[worst]})" + tail
    label = worst.upper() if worst == "fail" else worst
    return f"{'**' + label + '**' if emphasis else label} {outcomes[worst]}/{total}" + tail


def format_matrix(
    outcomes: dict[tuple[str, str], dict[str, int]], collected: dict[tuple[str, str], int]
) -> str:
    """component x adapter for the terminal: the worst outcome of the cell's tests, with counts."""
    cells = set(outcomes) | set(collected)
    components = sorted({c for c, _ in cells})
    adapters = sorted({a for _, a in cells})
    width = max([len("component")] + [len(c) for c in components]) + 2
    cols = [max(len(a), 24) for a in adapters]
    lines = [
        "component".ljust(width)
        + "".join(a.ljust(w + 2) for a, w in zip(adapters, cols, strict=True))
    ]
    for c in components:
        cells_text = []
        for a, w in zip(adapters, cols, strict=True):
            done = outcomes.get((c, a), {})
            cells_text.append(
                cell_text(done, not_run=collected.get((c, a), 0) - sum(done.values())).ljust(w + 2)
            )
        lines.append(c.ljust(width) + "".join(cells_text))
    return "\n".join(lines)


def markdown(run: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The matrix (worst outcome per cell, tests counted), then failures and deviations with
    reasons."""
    cells: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in records:
        cells[(r["component"], r["adapter"])][r["outcome"]] += 1
    skipped_over = {tuple(k.split("|")): n for k, n in run.get("not_run", {}).items()}
    adapters, components = (
        run["adapters"],
        sorted({c for c, _ in cells} | {c for c, _ in skipped_over}),
    )
    lib = ", ".join(f"{k} {v}" for k, v in run["versions"].items())
    margin = closest_margins(records)
    lines = [
        "# Conformance matrix",
        "",
        f"Generated by `{run.get('command', 'pytest --report DIR')}` "
        "(transformer_conformance/report.py); do not edit by hand.",
        f"Spec {run.get('spec_version', '?')}, semantic profile "
        f"{_profile_text(run.get('semantics'))}. Versions: {lib}.",
        f"Device: {run['device']}"
        + (f", {run['machine_speed']}" if run.get("machine_speed") else "")
        + f". Hypothesis profile {run.get('hypothesis_profile')}: "
        f"{run['max_examples']} examples per test, "
        f"seed {run['seed']}.",
        "",
        "Each cell is the worst outcome of the component's tests for that adapter, with counts: "
        "`pass (N)`; "
        "`FAIL k/N` (k tests found a nonconformance); `deviation k/N` (declared by the adapter and "
        "seen); "
        "`deviation not seen` (declared, yet a targeted search found no example: the declaration "
        "may be "
        "stale); `unsupported` (the adapter does not offer it, or could express too few examples); "
        "`not run` (collected, never run: a run stopped early). The last column is the closest any "
        "passing "
        "comparison came to its bound, observed error / allowed (1 would fail), over all adapters.",
        "",
        "| component | " + " | ".join(adapters) + " | closest to the bound |",
        "|---" * (len(adapters) + 2) + "|",
    ]
    lines += [
        f"| {c} | "
        + " | ".join(
            cell_text(cells.get((c, a), {}), emphasis=True, not_run=skipped_over.get((c, a), 0))
            for a in adapters
        )
        + f" | {margin.get(c, '-')} |"
        for c in components
    ]
    lines += ["", "![observed / allowed per adapter and dtype](observed_over_allowed.png)"]
    for title, wanted, key in (
        ("Failures", ("fail",), "failure"),
        ("Declared deviations", ("deviation", "deviation not seen"), "reason"),
    ):
        found = [
            r
            for r in records
            if r["outcome"] in wanted
            or (key == "reason" and r["outcome"] == "pass" and "reason" in r)
        ]
        lines += ["", f"## {title} ({len(found)} tests)", ""]
        grouped: dict[tuple[str, ...], list[str]] = defaultdict(
            list
        )  # one line per finding, its dtypes listed
        for r in found:
            detail = str(r.get(key, "")).replace("\n", " / ")
            grouped[(r["adapter"], r["component"], r["check"], r["outcome"], detail)].append(
                r["dtype"]
            )
        for (adapter, component, check, outcome, detail), dtypes in grouped.items():
            lines.append(
                f"- `{adapter}` {component}.{check} @ {', '.join(dtypes)} ({outcome}): {detail}"
            )
    unsupported = sorted(
        {(r["adapter"], r["component"]) for r in records if r["outcome"] == "unsupported"}
    )
    lines += [
        "",
        f"## Unsupported ({len(unsupported)} adapter x component pairs with unsupported tests)",
        "",
    ]
    lines += [f"- `{a}` {c}" for a, c in unsupported]
    for adapter, keys in run.get("unmatched_deviations", {}).items():
        lines += [
            "",
            f"Declared by `{adapter}` but matching no test (stale?): "
            + ", ".join(f"`{k}`" for k in keys),
        ]
    return "\n".join(lines) + "\n"


def closest_margins(records: list[dict[str, Any]]) -> dict[str, str]:
    """component -> 'ratio (adapter, dtype)' of its passing comparison closest to its bound."""
    best: dict[str, tuple[float, str]] = {}
    for r in records:
        if r["outcome"] != "pass":
            continue
        values = [float(x) for x in r.get("ratios", []) if x != "inf"]
        if values and max(values) > best.get(r["component"], (-1.0, ""))[0]:
            best[r["component"]] = (max(values), f"{r['adapter']}, {r['dtype']}")
    return {c: f"{v:.2f} ({where})" for c, (v, where) in best.items()}


def plot(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Box plots of observed / allowed over every passing comparison, per adapter and dtype (log
    scale)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        if r["outcome"] == "pass":
            groups[f"{r['adapter']}\n{r['dtype']}"] += [
                max(float(x), 1e-6) for x in r.get("ratios", []) if x != "inf"
            ]
    if not groups:
        return None
    names = sorted(groups)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(names)), 4))
    ax.boxplot(
        [groups[n] for n in names], whis=(1, 99), showfliers=True, flierprops={"markersize": 2}
    )
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(1e-6, 2.0)  # below 1e-6 of the bound is as good as exact
    ax.axhline(1.0, color="red", linewidth=1)
    ax.set_ylabel("observed error / allowed bound")
    ax.set_title("Every passing comparison (whiskers 1st-99th percentile; red: the bound)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def merge(directories: list[Path], out: Path) -> bool:
    """One report from shard reports (a CI matrix or a job array, each shard run with --report):
    every test's record once (a test two shards ran keeps its worst outcome), the runs' information
    side by side. Returns whether any test failed."""
    runs: list[dict[str, Any]] = []
    by_test: dict[str, dict[str, Any]] = {}
    for directory in directories:
        data = json.loads((Path(directory) / "conformance.json").read_text())
        runs.append(data["run"])
        for record in data["results"]:
            kept = by_test.get(record["test"])
            if kept is None or ORDER.index(record["outcome"]) < ORDER.index(kept["outcome"]):
                by_test[record["test"]] = record
    records = list(by_test.values())
    run = {
        **runs[0],
        "adapters": sorted({r["adapter"] for r in records}),
        "command": " ; ".join(str(r.get("command", "")) for r in runs),
        "shards": [
            {"command": r.get("command"), "seed": r.get("seed"), "versions": r.get("versions")}
            for r in runs
        ],
        "unmatched_deviations": {
            k: v for r in runs for k, v in r.get("unmatched_deviations", {}).items()
        },
        "not_run": {k: v for r in runs for k, v in r.get("not_run", {}).items()},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "conformance.json").write_text(json.dumps({"run": run, "results": records}, indent=1))
    plot(records, out / "observed_over_allowed.png")
    from transformer_conformance.kernel_report import kernel_section

    (out / "CONFORMANCE.md").write_text(markdown(run, records) + kernel_section(records, out))
    return any(r["outcome"] == "fail" for r in records)
