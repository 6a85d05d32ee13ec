"""The semantics scorecard: for each implementation (rows) and each semantic choice (columns), what
it does, as a conformance run measured it, with the command that reproduces every cell that
differs.

    python -m transformer_conformance.scorecard REPORT_DIR... [--out docs/SCORECARD.md]

A column is a set of conformance tests that each settle one convention (mask polarity, the empty
row, causal alignment when T != S, ...); a cell is "as spec" when every one of them passed,
"differs" with the first reason when one failed or showed a declared deviation, "unsupported" when
the implementation could express none, "-" when it offers none of the components. Semantic columns
read the tests below float64 (a float64 run measures precision: it has its own column).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Result = dict[str, Any]


@dataclass(frozen=True)
class Column:
    title: str
    spec: str  # what the spec pins, in a few words
    picks: Callable[[Result], bool]
    # the concerns (adapters.Deviation.concerns) of the declared deviations that count against it:
    # one that concerns something else (a scale <= 0, a mask's shape) shows in OTHER instead
    concerns: tuple[str, ...] = ()


def _is(component: str | tuple[str, ...], *prefixes: str) -> Callable[[Result], bool]:
    names = (component,) if isinstance(component, str) else component
    return lambda r: r["component"] in names and r["check"].startswith(prefixes)


def _any(*tests: Callable[[Result], bool]) -> Callable[[Result], bool]:
    return lambda r: any(t(r) for t in tests)


def _below_float64(test: Callable[[Result], bool]) -> Callable[[Result], bool]:
    return lambda r: r["dtype"] != "float64" and test(r)


ATTENTION = ("scaled_dot_product_attention", "attention_weights", "multi_head_attention")
COLUMNS = (
    Column(
        "mask polarity",
        "bool True = may attend; additive float",
        _is(
            ATTENTION,
            "matches_reference[bool",
            "matches_reference[self+bool",
            "matches_reference[additive",
        ),
        concerns=("mask_polarity",),
    ),
    Column(
        "fully masked row",
        "weights and context 0, lse -inf",
        _any(
            _is(ATTENTION + ("grouped_query_attention",), "fully_masked_rows_are_zero"),
            _is(("variant_attention", "attention_lse"), "empty_rows_follow_the_convention"),
            _is("softmax", "all_neg_inf_slice_is_zero"),
        ),
        concerns=("fully_masked_row",),
    ),
    Column(
        "causal when T != S",
        "top_left and bottom_right both offered",
        _is(
            ATTENTION + ("grouped_query_attention",),
            "matches_reference[causal_",
            "matches_reference[cross+causal_",
        ),
        concerns=("causal_alignment",),
    ),
    Column(
        "window",
        "(left, right), -1 unbounded, bottom-right",
        _is(
            "variant_attention",
            "unbounded_window_is_no_window",
            "causal_window_is_causal",
            "matches_reference[window",
        ),
        concerns=("window",),
    ),
    Column(
        "soft-cap order",
        "cap on scaled logits, before masks",
        _is(
            "variant_attention",
            "hidden_keys_weigh_exactly_zero",
            "matches_reference[softcap",
            "capped_lse",
        ),
        concerns=("softcap",),
    ),
    Column(
        "GQA head map",
        "query head h reads kv head h // G",
        _any(
            _is("grouped_query_attention", "kv_head_feeds_its_group", "matches_reference"),
            _is(("variant_attention", "attention_lse"), "grouped_heads_equal_repeated_heads"),
        ),
        concerns=("gqa",),
    ),
    Column(
        "ALiBi / sinks",
        "-slope |t + off - s|; sink in the denominator",
        _is(
            "variant_attention",
            "alibi_is_an_additive_bias",
            "sink_is_a_key",
            "matches_reference[alibi",
            "matches_reference[sinks",
        ),
        concerns=("alibi_sinks",),
    ),
    Column(
        "RoPE layout",
        "half (i, i + r/2) and interleaved (2i, 2i + 1)",
        _is("rotary_embedding", "matches_reference", "layouts_are_one_rotation", "scores_depend"),
        concerns=("rope",),
    ),
    Column(
        "packed batch",
        "per-sequence, bottom-right, empty sequences",
        _is("packed_attention", "matches_reference", "pack_"),
        concerns=("packed",),
    ),
    Column(
        "paged cache",
        "lengths include the new tokens; any page order",
        _is(
            ("paged_attention", "paged_cache_write"),
            "matches_reference",
            "pages_",
            "page_size",
            "paged_",
            "a_refused",
        ),
        concerns=("paged",),
    ),
)
DECODING = Column(
    "greedy / beam search",
    "argmax, ties to the lower id; beam keeps the W best, GNMT penalty",
    _is(
        ("greedy_decode", "beam_search"),
        "matches_reference",
        "tokens_are",
        "ordered_by_score",
        "width_one",
        "exhaustive",
    ),
    concerns=("decoding", "length_penalty", "beam_eos"),
)
FLOAT64 = Column(
    "float64 honoured",
    "float64 inputs computed in float64",
    lambda r: r["dtype"] == "float64" and r["check"].startswith("matches_reference"),
    concerns=("float64",),
)
REFUSED = Column(
    "bad input refused",
    "ValueError for every refused input",
    lambda r: r["check"].startswith("refuses["),
    concerns=("refusal",),
)
# Declared deviations that no column reading their test counts, at any dtype: one about an input
# condition no column is about (a scale <= 0, a mask's shape), or a convention shown in a test no
# column of it reads (a fully masked row in a stack's test). The columns above say what the
# convention is, this what else differed.
OTHER = Column(
    "other declared deviations",
    "none",
    lambda r: True,
)
DIFFERS = ("fail", "deviation")


def _seen(r: Result) -> bool:
    """A passing test whose declared deviation (one with a trigger) showed in some examples: the
    implementation differs there, the other examples conform."""
    return r.get("reason", "").startswith("declared deviation seen in")


def _differs(r: Result) -> bool:
    return r["outcome"] in DIFFERS or _seen(r)


# what a deviation without stated concerns is about: anything (a report before concerns, 1.8.0,
# carries none: every deviation there counts against its test's columns)
ANY = "*"


def _counts_against(r: Result, column: Column) -> bool:
    """Whether a result differs in what the column is about: a failure always; a declared
    deviation when what it concerns is the column's, or unstated."""
    if r["outcome"] == "fail":
        return True
    if not _differs(r):
        return False
    concerns = set(r.get("concerns") or [ANY])
    return ANY in concerns or bool(concerns & set(column.concerns))


def _elsewhere(r: Result) -> set[str]:
    """What a declared deviation seen in r concerns that no column reading r counts (OTHER's
    cell): a scale <= 0 in a window test, or a fully masked row in a stack's test, which no
    fully-masked-row column reads. A column that reads the test at another dtype counts it (the
    semantic columns leave float64 out, and say the same there). A deviation that states no
    concern is left to the columns."""
    if r["outcome"] == "fail" or not _differs(r):
        return set()
    columns = (*COLUMNS, DECODING, FLOAT64, REFUSED)
    if any(c.picks(r) and _counts_against(r, c) for c in columns):
        return set()
    return set(r.get("concerns") or []) - {ANY}


def _short(reason: str) -> str:
    text = (
        reason.split(": ", 1)[-1] if reason.startswith(("declared deviation", "fail")) else reason
    )
    first = text.split(". ")[0]
    return first.rstrip(".") if len(first) <= 300 else first[:300].rstrip(".") + " (cut)"


def _failure_line(failure: str) -> str:
    """The line of a failure report that says what differed (after the inputs line)."""
    lines = [x.strip() for x in failure.splitlines() if x.strip()]
    return lines[1] if len(lines) > 1 else (lines[0] if lines else "")


def _repro(r: Result) -> str:
    return f"pytest '{r['test']}' --adapter {r['adapter']} -p no:xdist"


def cell(results: list[Result], column: Column, notes: list[str]) -> str:
    """One cell's text; a differing cell appends its footnote (reason and command) to notes."""
    picked = [r for r in results if column.picks(r)]
    if column not in (FLOAT64, REFUSED, OTHER):
        picked = [r for r in picked if r["dtype"] != "float64"]
    if not picked:
        return "-"
    ran = [r for r in picked if r["outcome"] not in ("unsupported", "skipped")]
    if (
        not ran
    ):  # a component it does not offer is "-", one it offers but cannot express "unsupported"
        offered = [r for r in picked if "does not offer" not in r.get("reason", "")]
        return "unsupported" if offered else "-"
    if column is OTHER:
        return _other_cell(ran, notes)
    differing = [r for r in ran if _counts_against(r, column)]
    if column is REFUSED:
        text = f"{len(ran) - len(differing)} of {len(ran)}"
        if not differing:
            return text
    elif not differing:
        return f"as spec ({len(ran)})"
    else:
        text = f"differs {len(differing)}/{len(ran)}"
    first = differing[0]
    reason = first.get("reason") or _failure_line(first.get("failure", ""))
    notes.append(
        f"{first['adapter']}, {column.title} ({first['component']}.{first['check']} @ "
        f"{first['dtype']}): {_short(reason)}. Reproduce: `{_repro(first)}`"
    )
    return f"{text} [{len(notes)}]"


def _other_cell(ran: list[Result], notes: list[str]) -> str:
    """OTHER: each concern outside the columns that a declared deviation showed, with the number
    of tests it showed in and a note (reason and command) for its first."""
    by: dict[str, list[Result]] = {}
    for r in ran:
        for c in sorted(_elsewhere(r)):
            by.setdefault(c, []).append(r)
    if not by:
        return "none"
    parts = []
    for c, rs in by.items():
        first = rs[0]
        notes.append(
            f"{first['adapter']}, {OTHER.title}: {c.replace('_', ' ')} "
            f"({first['component']}.{first['check']} @ {first['dtype']}): "
            f"{_short(first.get('reason', ''))}. Reproduce: `{_repro(first)}`"
        )
        parts.append(f"{c.replace('_', ' ')} ({len(rs)}) [{len(notes)}]")
    return "; ".join(parts)


def load(dirs: list[Path]) -> tuple[list[Result], list[dict[str, Any]]]:
    results: list[Result] = []
    runs = []
    for d in dirs:
        data = json.loads((d / "conformance.json").read_text())
        results += data["results"]
        runs.append(data["run"])
    return results, runs


def _run_line(run: dict[str, Any]) -> str:
    """One run as the scorecard cites it: its adapters, spec version, profile and command."""
    adapters = ", ".join(run.get("adapters", [])) or "?"
    return (
        f"{adapters}: spec {run.get('spec_version', '?')}, profile "
        f"{run.get('hypothesis_profile', '?')}, `{run.get('command', '')}`"
    )


def markdown(results: list[Result], runs: list[dict[str, Any]]) -> str:
    adapters = sorted({r["adapter"] for r in results}, key=lambda a: (a != "numpy", a))
    columns = (*COLUMNS, DECODING, FLOAT64, REFUSED, OTHER)
    notes: list[str] = []
    rows = []
    for a in adapters:
        mine = [r for r in results if r["adapter"] == a]
        rows.append(f"| {a} | " + " | ".join(cell(mine, c, notes) for c in columns) + " |")
    versions = runs[0].get("versions", {}) if runs else {}
    lines = [
        "# Semantics scorecard",
        "",
        "Generated by `python -m transformer_conformance.scorecard` from the conformance runs "
        "below; do not edit by hand. Versions (the first run's): "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + ".",
        "",
        *[f"- {_run_line(r)}" for r in runs],
        "",
        "Each cell: `as spec (N)` when the N tests that settle the convention passed; `differs "
        "k/N [n]` when k of them failed or showed a declared deviation (note n gives the reason "
        "and the command that reruns it); `unsupported` when the implementation could express "
        "none of them; `-` when it offers none of the components. The semantic columns read the "
        "tests below float64; `float64 honoured` reads the float64 differential tests, `bad "
        "input refused` every refusal test. A declared deviation counts against a column when "
        "what it concerns is the column's (or is not stated); one about an input condition no "
        "column is about (a scale <= 0, a mask's shape), or one shown in a test no column of its "
        "concern reads (a fully masked row in a stack), is listed under `other declared "
        "deviations` instead, with the number of tests it showed in.",
        "",
        "| implementation | " + " | ".join(c.title for c in columns) + " |",
        "|---|" + "---|" * len(columns),
        "| *the spec* | " + " | ".join(c.spec for c in columns) + " |",
        *rows,
        "",
        "## Notes",
        "",
        *[f"{i}. {n}" for i, n in enumerate(notes, 1)],
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path, help="report folders (conformance.json)")
    parser.add_argument("--out", type=Path, default=Path("docs/SCORECARD.md"))
    args = parser.parse_args(argv)
    missing = [d for d in args.reports if not (d / "conformance.json").exists()]
    if missing:
        print(f"no conformance.json in {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    results, runs = load(args.reports)
    # the scorecard tabulates what each library does against the canonical conventions: a report
    # given under another semantic profile (--semantics) would mix verdicts of two specs
    profiled = [str(d) for d, r in zip(args.reports, runs, strict=True) if r.get("semantics")]
    if profiled:
        print(
            f"reports under a non-canonical semantic profile: {', '.join(profiled)}; the scorecard "
            "takes canonical runs only",
            file=sys.stderr,
        )
        return 2
    args.out.write_text(markdown(results, runs))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
