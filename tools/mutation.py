"""`make mutation` (not CI): the mutation score of the torch and jax adapters.

mutmut (3.x, configured in pyproject.toml's [tool.mutmut]) mutates the five adapter files; the test
command is the conformance suite itself (``-p no:xdist --profile ci --max-examples 3``, and ``-x``
from mutmut), and mutmut runs, for each mutant, only the conformance tests whose trampolines hit
the mutated function. This script drives mutmut and writes docs/MUTATION.md from its results:

    python tools/mutation.py run [--every N] [--adapters torch,jax] [GLOB ...]  # run, report
    python tools/mutation.py report        # docs/MUTATION.md from tools/mutation-results.json

GLOB is a mutant-name pattern (default: every mutant of the five files). ``--every N`` runs a
deterministic sample, every N-th mutant of each file in name order (explicitly named mutants are
rerun even when mutmut has a result for them). The adapters reach pytest through PYTEST_ADDOPTS,
with tools/mutation_pytest.py (no shrinking). Each undetected mutant's triage (equivalent: why; or
the gap it shows) is kept in tools/mutation_triage.py; one without an entry is UNTRIAGED.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FILES = [
    "adapters/torch_adapter.py",
    "adapters/torch_seq2seq.py",
    "adapters/jax_adapter.py",
    "adapters/jax_seq2seq.py",
    "adapters/flax_stacks.py",
]
MUTMUT = [sys.executable, "-m", "mutmut"]
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
STATUS |= {36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout"}
STATUS |= {None: "not checked", 2: "interrupted", -11: "segfault", -9: "segfault"}
OUT = ROOT / "docs" / "MUTATION.md"
HEADER = ROOT / "tools" / "mutation_header.md"
RESULTS = ROOT / "tools" / "mutation-results.json"
UNDETECTED = ("survived", "no tests")

sys.path.insert(0, str(ROOT / "tools"))
from mutation_triage import TRIAGE  # noqa: E402  (tools/ is not a package)


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _meta(path: str) -> dict[str, int | None]:
    meta = ROOT / "mutants" / (path + ".meta")
    if not meta.exists():
        return {}
    return json.loads(meta.read_text())["exit_code_by_key"]


def generate() -> None:
    """Create the mutants (mutants/*.meta) without running any test, as `mutmut run` does first."""
    code = (
        "from mutmut.__main__ import create_mutants, set_mutant_under_test\n"
        "from mutmut.utils.file_utils import copy_src_dir, copy_also_copy_files\n"
        "import os; os.makedirs('mutants', exist_ok=True)\n"
        "set_mutant_under_test('mutant_generation')\n"
        "copy_src_dir(); copy_also_copy_files(); create_mutants(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)


def sample(every: int) -> list[str]:
    generate()
    names: list[str] = []
    for path in FILES:
        names += sorted(_meta(path))[::every]
    return names


def run(patterns: list[str], adapters: list[str]) -> float:
    """mutmut run, one child at a time, torch on one thread; the adapters through PYTEST_ADDOPTS
    (mutmut's cache does not see it: a change of adapters starts from a clean mutants/)."""
    # --require-support: a mutant that turns every example "unsupported" (a vjp that gives up)
    # is killed, not skipped
    chosen = (
        " ".join(f"--adapter {a}" for a in adapters) + " --require-support -p tools.mutation_pytest"
    )
    mark = ROOT / "mutants" / "adapters.txt"
    if mark.exists() and mark.read_text() != chosen:
        shutil.rmtree(ROOT / "mutants")
    env = dict(os.environ, PYTEST_ADDOPTS=chosen, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env |= dict(XLA_FLAGS="--xla_cpu_multi_thread_eigen=false")
    start = time.monotonic()
    generate()
    mark.write_text(chosen)
    skipped = ROOT / "mutants" / "skipped.txt"
    if not skipped.exists():
        baseline(env, skipped)
    env |= dict(TCS_MUTATION_SKIPPED=str(skipped))
    if "jax" in adapters:
        isolated(patterns, env)
    else:
        command = [*MUTMUT, "run", "--max-children", "1", *patterns]
        subprocess.run(command, cwd=ROOT, env=env, check=False)
    return time.monotonic() - start


def _mutmut_config() -> dict[str, Any]:
    """pyproject.toml's [tool.mutmut]: the pytest arguments every mutant run uses."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def isolated(patterns: list[str], env: dict[str, str]) -> None:
    """Each mutant in a pytest of its own (mutmut's trampolines pick it from $MUTANT_UNDER_TEST),
    on the tests mutmut's stats say execute its function, with -x. mutmut's own runners fork from
    a process that has run jax, and XLA's threads do not survive os.fork(): under both its "fork"
    and "forkserver" isolation every jax mutant's child hung until the timeout (measured)."""
    stats_file = ROOT / "mutants" / "mutmut-stats.json"
    if not stats_file.exists():  # mutmut's stats phase alone, as `mutmut run` begins
        code = (
            "from mutmut.__main__ import collect_or_load_stats, get_mutant_runner, "
            "set_mutant_under_test, setup_source_paths, store_lines_covered_by_tests\n"
            "set_mutant_under_test('mutant_generation')\n"
            "setup_source_paths(); store_lines_covered_by_tests()\n"
            "collect_or_load_stats(get_mutant_runner(1), apply_config_invalidation=True)\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    stats = json.loads(stats_file.read_text())
    tests_by, durations = stats["tests_by_mangled_function_name"], stats["duration_by_test"]
    pytest_args = [*_mutmut_config()["pytest_add_cli_args"], "-x", "-q"]
    for path in FILES:
        meta_file = ROOT / "mutants" / (path + ".meta")
        if not meta_file.exists():
            continue
        meta = json.loads(meta_file.read_text())
        names = [
            n
            for n in sorted(meta["exit_code_by_key"])
            if any(fnmatch.fnmatch(n, p) for p in patterns)
        ]
        for i, name in enumerate(names):
            tests = sorted(tests_by.get(name.partition("__mutmut_")[0], ()))
            began = time.monotonic()
            if not tests:
                code = 33
            else:
                # the stats' time for these tests, and a fresh process's imports and compilations
                limit = 120 + 10 * sum(durations.get(test, 1.0) for test in tests)
                try:
                    code = subprocess.run(
                        [sys.executable, "-m", "pytest", *pytest_args, *tests],
                        cwd=ROOT / "mutants",
                        env=dict(env, MUTANT_UNDER_TEST=name),
                        timeout=limit,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    ).returncode
                except subprocess.TimeoutExpired:
                    code = 36
            meta["exit_code_by_key"][name] = code
            meta["durations_by_key"][name] = time.monotonic() - began
            meta_file.write_text(json.dumps(meta, indent=4))
            status = STATUS.get(code, "suspicious")
            print(
                f"[{i + 1}/{len(names)}] {name}: {status} ({time.monotonic() - began:.0f} s)",
                flush=True,
            )


def baseline(env: dict[str, str], skipped: Path) -> None:
    """One run of the unmutated adapters, without --require-support: the tests it skips (nothing
    it could express) are exempt from --require-support in the mutant runs."""
    config = _mutmut_config()
    args = [*config["pytest_add_cli_args"], *config["pytest_add_cli_args_test_selection"]]
    addopts = env["PYTEST_ADDOPTS"].replace("--require-support", "")
    out = skipped.with_suffix(".partial")
    out.unlink(missing_ok=True)
    out.touch()
    run_env = dict(env, PYTEST_ADDOPTS=addopts, TCS_MUTATION_SKIPPED_OUT=str(out))
    subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=ROOT, env=run_env)
    out.rename(skipped)
    print(f"baseline: {len(skipped.read_text().split())} tests skipped by the unmutated adapters")


def diff(name: str) -> str:
    shown = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True)
    lines = shown.stdout.splitlines()
    return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def save(scope: str, wall_s: float | None) -> None:
    """Each file with checked mutants in mutants/ replaces its entry in RESULTS (committed), so the
    report keeps the files that earlier runs, in other checkouts, covered."""
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for path in FILES:
        statuses = {n: STATUS.get(c, "suspicious") for n, c in sorted(_meta(path).items())}
        statuses = {n: s for n, s in statuses.items() if s != "not checked"}
        if not statuses:
            continue
        undetected = [n for n, s in statuses.items() if s in UNDETECTED]
        part = f"{len(statuses)} of its {len(_meta(path))} mutants"
        results[path] = {
            "date": time.strftime("%Y-%m-%d"),
            "scope": f"{part}, {scope}" if scope else part,
            "adapters": (ROOT / "mutants" / "adapters.txt").read_text().split("-p")[0].strip(),
            "wall_min": None if wall_s is None else round(wall_s / 60, 1),
            "statuses": statuses,
            "diffs": {n: diff(n) for n in undetected},
        }
    RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")


def report() -> str:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    rows, survivors, statuses, diffs = [], [], {}, {}
    total: Counter[str] = Counter()
    for path in FILES:
        if path not in results:
            continue
        entry = results[path]
        # "carried": counts of a run whose killed mutants' names were not kept (the first one)
        counts = Counter(entry["statuses"].values()) + Counter(entry.get("carried", {}))
        total += counts
        rows.append((path, counts, entry))
        for n, s in entry["statuses"].items():
            if s in UNDETECTED:
                survivors.append(n)
                statuses[n] = s
        diffs |= entry["diffs"]

    def line(name: str, c: Counter[str]) -> str:
        detected, missed = c["killed"] + c["timeout"], c["survived"] + c["no tests"]
        score = 100.0 * detected / (detected + missed) if detected + missed else 0.0
        other = sum(c.values()) - detected - missed
        return (
            f"| {name} | {sum(c.values())} | {c['killed']} | {c['timeout']} | {c['survived']} | "
            f"{c['no tests']} | {other} | {score:.1f}% |"
        )

    out = [HEADER.read_text().rstrip() if HEADER.exists() else "# Mutation score", ""]
    out += ["## Results (generated by `make mutation`)", ""]
    out += [
        "Each file's row is its latest run (tools/mutation-results.json keeps them across",
        "checkouts):",
        "",
    ]
    for path, _, entry in rows:
        wall = f", a run of {entry['wall_min']} min" if entry.get("wall_min") else ""
        scope = f"{entry['scope']}; " if entry.get("scope") else ""
        text = f"* `{path}` ({entry['date']}, {entry['adapters']}{wall}): {scope}"
        out += textwrap.wrap(text.rstrip("; ") + ".", 100, subsequent_indent="  ")
    out += [
        "",
        "| file | mutants | killed | timeout | survived | no tests | other | score |",
        "|---|---|---|---|---|---|---|---|",
    ]
    out += [line(f"`{p}`", c) for p, c, _ in rows] + [line("**all**", total), ""]
    out += [
        "score = (killed + timeout) / (killed + timeout + survived + no tests): a mutant that no\n"
        "test executes is not detected either. other = suspicious/segfault/interrupted.",
        "",
    ]
    out += [f"## Undetected mutants ({len(survivors)})", ""]
    for name in survivors:
        triage = TRIAGE.get(name) or next(
            (t for p, t in TRIAGE.items() if fnmatch.fnmatch(name, p)), "**UNTRIAGED**"
        )
        out += [
            f"### `{name}` ({statuses[name]})",
            "",
            textwrap.fill(triage, 100),
            "",
            "```diff",
            diffs.get(name, ""),
            "```",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tools/mutation.py")
    parser.add_argument("command", choices=["run", "report"])
    parser.add_argument("--every", type=int, default=0, help="run every N-th mutant of each file")
    parser.add_argument("--scope", default="", help="a note on the run, kept in its results")
    parser.add_argument("--adapters", default="torch,jax", help="comma-separated --adapter names")
    parser.add_argument("patterns", nargs="*")
    args = parser.parse_intermixed_args(argv)
    wall = None
    if args.command == "run":
        patterns = args.patterns or [f"{_module(p)}.*" for p in FILES]
        if args.every:
            chosen = sample(args.every)
            patterns = [n for n in chosen if any(fnmatch.fnmatch(n, p) for p in patterns)]
        wall = run(patterns, args.adapters.split(","))
        save(args.scope, wall)
    OUT.write_text(report())
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
