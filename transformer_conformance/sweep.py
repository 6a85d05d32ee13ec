"""A seed sweep: the project's tests under many random seeds of the ``dev`` profile, from frozen
clones.

    python -m transformer_conformance.sweep --seeds 1-50 --workers 2 --out results/sweep

A flaky bound is a defect as serious as a missed bug, and the derandomized ``ci`` profile can hide
one:
this runs ``pytest --hypothesis-seed=N`` for every seed, each worker in its own clone of HEAD (so
the working copy can change meanwhile) and one pytest process per core. It writes, under --out:
``s<N>/conformance.json`` per seed, ``summary.json`` and ``SWEEP.md``: failures (with their rerun
commands), and the distribution of observed / allowed over every comparison of the passing tests,
per adapter and dtype (median, 99th percentile, maximum), with the sweep's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from transformer_conformance.plugin import THREAD_VARIABLES, threads_per_process


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def _clone(repo: Path, where: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(repo), str(where)], check=True)
    return where


def _run_seeds(
    clone: Path,
    seeds: list[int],
    out: Path,
    pytest_args: list[str],
    deadline: float = float("inf"),
    workers: int = 1,
) -> list[dict[str, Any]]:
    """Run pytest once per seed in one clone, sequentially (its share of the cores); return each
    run's exit and time."""
    runs = []
    env = {**os.environ, "HYPOTHESIS_PROFILE": "dev", "PYTHONDONTWRITEBYTECODE": "1"}
    for name in THREAD_VARIABLES:  # as under xdist: workers x BLAS threads <= cores
        env.setdefault(name, threads_per_process(workers))
    env.pop("CI", None)
    for seed in seeds:
        if time.perf_counter() > deadline:  # --minutes: no new seed after it; the summary says so
            break
        report = out / f"s{seed}"
        start = time.perf_counter()
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:xdist",
            f"--hypothesis-seed={seed}",
            "--report",
            str(report),
        ]
        done = subprocess.run(cmd + pytest_args, cwd=clone, env=env, capture_output=True, text=True)
        (out / f"s{seed}.log").write_text(
            done.stdout[-20000:] + done.stderr[:20000] + done.stderr[20000:][-5000:]
        )
        runs.append(
            {
                "seed": seed,
                "exit": done.returncode,
                "seconds": round(time.perf_counter() - start, 1),
            }
        )
        print(
            f"seed {seed}: exit {done.returncode} in {runs[-1]['seconds']} s ({clone.name})",
            flush=True,
        )
    return runs


def summarise(out: Path, runs: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """Failures and the observed / allowed distribution over every passing comparison, per adapter x
    dtype."""
    ratios: dict[str, list[float]] = defaultdict(list)
    failures, closest = [], []
    for run in runs:
        path = out / f"s{run['seed']}" / "conformance.json"
        if not path.exists():
            failures.append(
                {
                    "seed": run["seed"],
                    "test": "(no report)",
                    "failure": (out / f"s{run['seed']}.log").read_text()[-2000:],
                }
            )
            continue
        for r in json.loads(path.read_text())["results"]:
            if r["outcome"] == "fail":
                failures.append(
                    {"seed": run["seed"], "test": r["test"], "failure": r.get("failure", "")[:1500]}
                )
            elif r["outcome"] == "pass":
                values = [float(x) for x in r.get("ratios", []) if x != "inf"]
                ratios[f"{r['adapter']} {r['dtype']}"] += values
                if values:
                    closest.append((max(values), run["seed"], r["test"]))
    table = {
        key: {
            "comparisons": len(v),
            "median": float(np.median(v)),
            "p99": float(np.percentile(v, 99)),
            "max": float(np.max(v)),
        }
        for key, v in sorted(ratios.items())
        if v
    }
    closest.sort(reverse=True)
    return {
        "seeds": [r["seed"] for r in runs],
        "wall_seconds": round(wall, 1),
        "runs": runs,
        "failures": failures,
        "observed_over_allowed": table,
        "closest": [{"ratio": c[0], "seed": c[1], "test": c[2]} for c in closest[:10]],
    }


def markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [
        "# Seed sweep",
        "",
        f"Seeds {min(seeds)}-{max(seeds)} ({len(seeds)} runs of the `dev` profile, "
        "`--hypothesis-seed=N`), "
        f"wall time {summary['wall_seconds'] / 60:.1f} min; failures: {len(summary['failures'])}"
        + (f"; commit {summary['commit']}." if summary.get("commit") else "."),
        "",
        "Observed error / allowed bound over every comparison of the passing tests:",
        "",
        "| adapter dtype | comparisons | median | 99th percentile | max |",
        "|---|---|---|---|---|",
    ]
    for key, row in summary["observed_over_allowed"].items():
        lines.append(
            f"| {key} | {row['comparisons']} | {row['median']:.3g} | {row['p99']:.3g} | "
            f"{row['max']:.3g} |"
        )
    lines += ["", "Closest to the bound:", ""]
    lines += [f"- {c['ratio']:.3f}: seed {c['seed']}, `{c['test']}`" for c in summary["closest"]]
    if summary["failures"]:
        lines += ["", "## Failures", ""]
        lines += [
            f"- seed {f['seed']}: `{f['test']}`: "
            f"{f['failure'].splitlines()[1] if f['failure'].count(chr(10)) else f['failure']}"
            for f in summary["failures"]
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1-50", help="seeds, e.g. 1-50 or 1,5,9 (default 1-50)")
    parser.add_argument(
        "--workers", type=int, default=2, help="clones run in parallel, one pytest each (default 2)"
    )
    parser.add_argument(
        "--out", default="results/sweep", help="where the reports go (default results/sweep)"
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="start no new seed after this many minutes (the summary counts the seeds run)",
    )
    parser.add_argument(
        "pytest_args",
        nargs="*",
        help="passed to pytest (after --), e.g. transformer_conformance/conformance",
    )
    args = parser.parse_args(argv)
    repo = Path(
        subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seeds = _seeds(args.seeds)
    start = time.perf_counter()
    deadline = start + 60 * args.minutes if args.minutes else float("inf")
    # the commit every clone runs (a later reader cannot tell it from the results otherwise)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="tcs-sweep-") as tmp:
        clones = [_clone(repo, Path(tmp) / f"clone-{i}") for i in range(args.workers)]
        shares = [seeds[i :: args.workers] for i in range(args.workers)]
        with ThreadPoolExecutor(args.workers) as pool:
            results = pool.map(
                lambda pair: _run_seeds(
                    pair[0], pair[1], out, args.pytest_args, deadline, args.workers
                ),
                zip(clones, shares, strict=True),
            )
            runs = sorted((r for share in results for r in share), key=lambda r: r["seed"])
    summary = summarise(out, runs, time.perf_counter() - start)
    summary["commit"] = commit
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "SWEEP.md").write_text(markdown(summary))
    print(markdown(summary))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
