"""The kernel-scale part of a report (spec/kernel_scale.py): per adapter the largest shapes checked,
and observed error and allowed bound against the key length S, per dtype, on log-log axes, so a
kernel author sees how their error grows next to the reference's own (the bound is 4x it plus the
output's rounding)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

KERNEL_CHECK = "matches_streaming_oracle"
_SHAPE = re.compile(r"T(\d+)xS(\d+)xK(\d+)")


def _shape(record: dict[str, Any]) -> tuple[int, int, int] | None:
    if not record["check"].startswith(KERNEL_CHECK):
        return None
    found = _SHAPE.search(record["check"])
    return tuple(int(g) for g in found.groups()) if found else None  # type: ignore[return-value]


def largest(records: list[dict[str, Any]]) -> dict[str, str]:
    """adapter -> its largest passing kernel-scale case (by T x S) and in which dtypes."""
    best: dict[str, tuple[int, str, set[str]]] = {}
    for r in records:
        shape = _shape(r)
        if shape is None or r["outcome"] != "pass":
            continue
        size, case = shape[0] * shape[1], r["check"][len(KERNEL_CHECK) + 1 : -1]
        kept = best.get(r["adapter"])
        if kept is None or size > kept[0]:
            best[r["adapter"]] = (size, case, {r["dtype"]})
        elif size == kept[0]:
            kept[2].add(r["dtype"])
    return {a: f"{case} ({', '.join(sorted(d))})" for a, (_, case, d) in sorted(best.items())}


def error_plot(records: list[dict[str, Any]], path: Path) -> Path | None:
    """Observed max error (dots) and allowed bound (dashes) of every example against S, one panel
    per adapter, one colour per dtype."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    points: dict[str, dict[str, list[tuple[int, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in records:
        shape = _shape(r)
        for observed, allowed in r.get("errors", []) if shape else []:
            points[r["adapter"]][r["dtype"]].append((shape[1], observed, allowed))  # type: ignore[index]
    if not points:
        return None
    adapters = sorted(points)
    fig, axes = plt.subplots(1, len(adapters), figsize=(5 * len(adapters), 4), squeeze=False)
    for ax, adapter in zip(axes[0], adapters, strict=True):
        for i, (dtype, values) in enumerate(sorted(points[adapter].items())):
            values.sort()
            S = [v[0] for v in values]
            colour = f"C{i}"
            ax.scatter(S, [max(v[1], 1e-12) for v in values], s=10, color=colour, label=dtype)
            ax.scatter(S, [v[2] for v in values], s=60, marker="_", color=colour)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("key length S")
        ax.set_ylabel("max |error| (dots), allowed (dashes)")
        ax.set_title(f"{adapter}: error against the streaming float64 oracle", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def kernel_section(records: list[dict[str, Any]], directory: Path) -> str:
    """The Markdown section (empty without kernel-scale records); writes kernel_error_vs_S.png."""
    sizes = largest(records)
    if not any(_shape(r) for r in records):
        return ""
    lines = ["", "## Kernel scale", "", "| adapter | largest case passed |", "|---|---|"]
    lines += [f"| {a} | {case} |" for a, case in sizes.items()] or ["| - | none passed |"]
    if error_plot(records, directory / "kernel_error_vs_S.png"):
        lines += ["", "![error and bound against S](kernel_error_vs_S.png)"]
    return "\n".join(lines) + "\n"
