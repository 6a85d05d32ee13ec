"""The pytest plugin: adapter selection, devices, Hypothesis profiles, the conformance matrix and
report.

Installed, it is the ``pytest11`` entry point ``transformer_conformance`` and loads with every
pytest run, inert until asked: it becomes active when ``--adapter`` is given (the conformance tests
are then added to the run, beside the user's own), when ``--conformance`` is, or when the run
collects the conformance tests (transformer_conformance/conformance/). Inactive, it changes nothing:
no profile is loaded, no library imported, no environment variable set.

State lives in one object (``Conformance``) registered with pytest, not in module globals. Under
pytest-xdist every worker runs tests and the controller, which receives every test report, keeps the
matrix and writes the report.
"""

from __future__ import annotations

import difflib
import os
import re
import shlex
import tempfile
from collections import Counter, defaultdict
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

# Exit codes of a run whose options are wrong (pytest's own usage error is 4).
USAGE_ERROR, IMPORT_ERROR = 2, 3
# Where the conformance tests live: added to a run that names an adapter.
TESTS = Path(__file__).parent / "conformance"

# Hypothesis profiles, as settings objects (the user's own profiles and loaded profile are left
# alone). `ci` is derandomized (the same examples every run) and the default under CI; `dev` is
# quick and random; `thorough` draws many more examples and free shapes as well as buckets.
# Deadlines are off: JAX compiles on a shape's first call; hangs are pytest-timeout's job.
_COMMON: dict[str, Any] = dict(
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILES: dict[str, dict[str, Any]] = {
    "dev": dict(max_examples=10),
    "ci": dict(max_examples=10, derandomize=True, database=None),
    "thorough": dict(max_examples=200, phases=list(Phase)),
    # production lengths (spec/kernel_scale.py): only the kernel-scale tests, two examples each
    "kernel": dict(max_examples=2),
}
# --scale production is the kernel profile under the name a kernel author looks for
SCALES = {"default": None, "production": "kernel"}


def default_profile() -> str:
    return os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "conformance", "transformer-conformance (spec conformance of Transformer components)"
    )
    group.addoption(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME|module:object",
        help="adapter to check: a built-in (numpy, torch, jax) or a third party's module:object; "
        "repeatable. "
        "Default: numpy, torch and jax, those installed; third-party adapters (keras) run when "
        "named.",
    )
    group.addoption(
        "--conformance",
        action="store_true",
        help="run the conformance tests (implied by --adapter)",
    )
    group.addoption(
        "--device",
        default="cpu",
        choices=["cpu", "cuda"],
        help="device the adapters run on (default cpu)",
    )
    group.addoption(
        "--component", action="append", default=[], help="only these components (repeatable)"
    )
    group.addoption(
        "--profile",
        default=None,
        choices=sorted(PROFILES),
        help="Hypothesis profile of the conformance tests (default: $HYPOTHESIS_PROFILE, ci under "
        "$CI, else dev)",
    )
    group.addoption(
        "--scale",
        default="default",
        choices=sorted(SCALES),
        help="production: the kernel-scale tests only (lengths 512 to 16384, spec/kernel_scale.py),"
        " the same as --profile kernel",
    )
    group.addoption(
        "--require-support",
        action="store_true",
        help="a test whose examples the adapter could not express at all (every one raised "
        "Unsupported) fails instead of being skipped: for a built-in adapter, or your own once "
        "it supports everything it offers (a component it does not offer stays a skip)",
    )
    group.addoption(
        "--semantics",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="check against a named alternative of one of the spec's conventions (repeatable; "
        "reference/semantics.py), e.g. fully_masked_row=uniform (jax, HF) or fully_masked_row=nan; "
        "default: the canonical profile, which the matrix and scorecard use",
    )
    group.addoption(
        "--max-examples",
        type=int,
        default=None,
        help="Hypothesis examples per test (overrides the profile's)",
    )
    group.addoption(
        "--report",
        default=None,
        metavar="DIR",
        help="write DIR/conformance.json, DIR/CONFORMANCE.md and DIR/failures/*.npz",
    )
    group.addoption(
        "--reproduce",
        default=None,
        metavar="VERSION:BLOB",
        help="replay one failing example exactly (the blob a failure prints in its rerun command)",
    )


def _close(name: str, known: Iterable[str]) -> str:
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
    return f"; did you mean {', '.join(near)}?" if near else ""


def _adapters_in_node_ids(args: list[str], components: Iterable[str]) -> list[str]:
    """The adapter keys named by test ids on the command line
    ('...::test_property[torch-softmax....]')."""
    names = "|".join(re.escape(c) for c in sorted(components, key=len, reverse=True))
    found = []
    for arg in args:
        match = re.search(rf"::test_\w+\[(.+?)-({names})\.", arg)
        if match and match.group(1) not in found:
            found.append(match.group(1))
    return found


def _collects_conformance(config: pytest.Config) -> bool:
    """Whether the run's paths (its arguments, or testpaths without any) reach the conformance
    tests."""
    args = [a.split("::")[0] for a in config.args] or [str(config.rootpath)]
    for arg in args:
        path = Path(arg) if Path(arg).is_absolute() else Path(config.invocation_params.dir) / arg
        try:
            path = path.resolve()
        except OSError:
            continue
        if path == TESTS or TESTS in path.parents:
            return True
        # a folder above them, unless they are installed below it (pytest does not collect from a
        # virtualenv's site-packages: a user's `pytest -p transformer_conformance` in their repo)
        if path in TESTS.parents and "site-packages" not in TESTS.relative_to(path).parts:
            return True
    return False


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def threads_per_process(processes: int) -> str:
    """The cores of this machine shared among processes that all compute at once."""
    return str(max(1, (os.cpu_count() or 1) // max(1, processes)))


def _share_cores(config: pytest.Config) -> None:
    """Under pytest-xdist every worker's BLAS (NumPy's OpenBLAS, torch's OpenMP pool) would start
    one thread per core: n workers x n threads on n cores. Measured on 2 cores with -n 2: the torch
    stacks ran in 38.6 s, and in 11.9 s with one thread per worker. The controller sets the
    workers' share before it starts them (they inherit its environment); a value the user set
    stays."""
    if hasattr(config, "workerinput"):
        return
    workers = getattr(config.option, "numprocesses", None)
    if workers in ("auto", "logical"):
        workers = os.cpu_count() or 1
    if not isinstance(workers, int) or workers < 2:
        return
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, threads_per_process(workers))


def pytest_configure(config: pytest.Config) -> None:
    requested = bool(config.getoption("adapter") or config.getoption("conformance"))
    if not (requested or _collects_conformance(config)):
        return  # another project's pytest run: stay out of its way
    # jax warns when another process sharing its compilation cache evicted an entry it was writing:
    # nothing about the library under test, and under `filterwarnings = error` it would decide a
    # check (a bad input counted as refused)
    config.addinivalue_line(
        "filterwarnings", "ignore:Error writing persistent compilation cache entry:UserWarning"
    )
    if requested and not _collects_conformance(config):
        here = Path(config.invocation_params.dir).resolve()
        if [Path(a).resolve() for a in config.args] == [here] and here in TESTS.parents:
            # installed in a virtualenv inside the folder pytest would walk, which pytest does not
            # enter, and an argument below an argument is not collected again: run them alone (a
            # user's own tests run beside them when named: `pytest tests/ --adapter ...`)
            config.args[:] = [str(TESTS)]
        else:
            config.args.append(str(TESTS))  # the conformance tests join the user's own
    # JAX would take 75% of a GPU's memory when its backend starts, leaving torch (same process,
    # --device cuda, the benchmarks) to run out: allocate on demand instead. Must precede the first
    # jax import.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    _share_cores(config)
    profile = config.getoption("profile") or SCALES[config.getoption("scale")] or default_profile()
    if profile == "thorough":  # read by spec/strategies.py at import
        os.environ.setdefault("TCS_FREE_SHAPES", "1")
    if profile not in PROFILES:
        pytest.exit(f"Hypothesis profile {profile!r} is not one of {sorted(PROFILES)}", USAGE_ERROR)
    chosen = settings(**{**_COMMON, **PROFILES[profile]})
    if config.getoption("max_examples"):
        chosen = settings(chosen, max_examples=config.getoption("max_examples"))

    from adapters import BUILTINS, available_builtins, load_adapter
    from reference.semantics import parse, set_profile
    from spec.registry import COMPONENTS

    try:  # every process (xdist workers too) evaluates the reference under the chosen profile
        set_profile(parse(config.getoption("semantics")))
    except ValueError as e:
        pytest.exit(f"--semantics: {e}", USAGE_ERROR)

    for name in config.getoption("component"):
        if name not in COMPONENTS:
            pytest.exit(
                f"--component {name!r} is not a component of the spec{_close(name, COMPONENTS)}",
                USAGE_ERROR,
            )
    names = (
        config.getoption("adapter")
        or _adapters_in_node_ids(config.args, COMPONENTS)
        or available_builtins()
    )
    adapters = []
    for name in names:
        if ":" not in name and name not in BUILTINS:
            known = ", ".join(BUILTINS)
            pytest.exit(
                f"--adapter {name!r} is neither a built-in ({known}) nor "
                f"module:object{_close(name, BUILTINS)}",
                USAGE_ERROR,
            )
        try:
            adapters.append(load_adapter(name, config.getoption("device")))
        except ValueError as e:  # a broken --adapter is a usage error, not 500 test failures
            pytest.exit(str(e), IMPORT_ERROR)
    config.pluginmanager.register(
        Conformance(config, adapters, profile, chosen), "transformer-conformance"
    )


def conformance(config: pytest.Config) -> Conformance:
    plugin = config.pluginmanager.get_plugin("transformer-conformance")
    if not isinstance(plugin, Conformance):
        pytest.skip(
            "the conformance plugin is not active in this run (pass --adapter or --conformance)"
        )
    return plugin


@pytest.fixture
def tcs(request: pytest.FixtureRequest) -> Conformance:
    """The run's conformance state (adapters, settings, results): what a conformance test reports
    to."""
    return conformance(request.config)


class Conformance:
    """One run's adapters, the tallies of its tests and, on the xdist controller, the matrix and
    report."""

    def __init__(self, config: pytest.Config, adapters: list[Any], profile: str, chosen: settings):
        self.config, self.adapters = config, adapters
        self.profile, self.settings = profile, chosen
        self.components = config.getoption("component") or None
        self.report = None
        if config.getoption("report") and not hasattr(
            config, "workerinput"
        ):  # the xdist controller writes it
            from transformer_conformance.report import Report

            self.report = Report(Path(config.getoption("report")), config, profile, chosen)
        self.results: dict[str, dict[str, Any]] = {}  # nodeid -> what its run did (this process)
        self._last_component: dict[str, str] = {}  # adapter key -> the component it last ran
        self.outcomes: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.collected: dict[tuple[str, str], int] = defaultdict(int)  # cell -> tests collected
        self.unmatched: dict[
            str, list[str]
        ] = {}  # adapter -> declared deviations no collected test can match
        self.worst: dict[str, tuple[float, str]] = defaultdict(
            lambda: (0.0, "")
        )  # adapter -> (observed/allowed, test)
        self.speed: dict[str, list[float]] = defaultdict(
            lambda: [0.0, 0]
        )  # adapter or "family X" -> [seconds, examples]
        self.warned: dict[str, Counter[str]] = defaultdict(Counter)  # adapter -> warning -> tests

    # --- collection ------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        from transformer_conformance.targets import bad_input_targets, property_targets

        if "target" not in metafunc.fixturenames:
            return
        family = getattr(metafunc.module, "FAMILY", None)  # each test_<family>.py names its family
        name = metafunc.function.__name__
        if name == "test_refuses_bad_input":
            targets = bad_input_targets(self.adapters, self.components)
        else:
            kind = {"test_gradient_property": "gradient", "test_kernel_property": "kernel"}.get(
                name, "forward"
            )
            targets = property_targets(self.adapters, self.components, kind)
        # the kernel profile runs the kernel-scale tests and nothing else; the others never do
        if (name == "test_kernel_property") != (self.profile == "kernel"):
            targets = iter(())
        metafunc.parametrize(
            "target", [t.param() for t in targets if family is None or t.component.family == family]
        )

    @pytest.hookimpl(trylast=True)  # after other plugins deselect (pytest-split's shards, -k)
    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        # a family none of whose components was asked for leaves an empty parametrisation: not a
        # test
        empty = [
            i for i in items if "target" in getattr(i, "fixturenames", ()) and _target(i) is None
        ]
        if empty:
            config.hook.pytest_deselected(items=empty)
            items[:] = [i for i in items if i not in empty]
        matched: dict[str, set[str]] = defaultdict(set)
        components: set[str] = set()
        for item in items:
            target = _target(item)
            if target is not None:
                matched[target.adapter.name].update(target.deviation_keys())
                components.add(target.component.name)
                key = (
                    *target.cell,
                    target.component.family,
                    target.property_name,
                    target.dtype.name,
                )
                item.user_properties.append(("tcs", key))  # carried to the controller under xdist
        # a declaration that matches no collected test (the kernel profile collects too few to say)
        for adapter in self.adapters if self.profile != "kernel" else ():
            stale = sorted(
                k
                for k in adapter.deviations
                if k.split(".")[0] in components and k not in matched[adapter.name]
            )
            if stale:
                self.unmatched[adapter.name] = stale
                if self.report is not None:
                    self.report.unmatched[adapter.name] = stale

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Count each cell's tests once every plugin has selected (shards, -k, deselection)."""
        for item in session.items:
            target = _target(item)
            if target is not None:
                self.collected[target.cell] += 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist the controller collects nothing: count the cells from the first worker's test
        ids."""
        if self.collected:
            return
        from spec.registry import COMPONENTS

        names = {a.key: a.name for a in self.adapters}
        pattern = re.compile(
            r"\[(?P<key>.+?)-(?P<component>"
            + "|".join(re.escape(c) for c in sorted(COMPONENTS, key=len, reverse=True))
            + r")\."
        )
        for nodeid in ids:
            found = pattern.search(nodeid)
            if found and found.group("key") in names:
                self.collected[(found.group("component"), names[found.group("key")])] += 1

    # --- running a target (called by the conformance tests) --------------------------------------
    def _release_between_components(self, target: Any) -> None:
        """Call the adapter's optional ``release()`` when its tests move on to another component:
        a library that keeps every compiled program (jax's jit caches) otherwise grows through a
        run; one pytest process over the whole suite reached the machine's 23 GB and crashed."""
        adapter = target.adapter
        last = self._last_component.get(adapter.key)
        self._last_component[adapter.key] = target.component.name
        release = getattr(adapter.namespace, "release", None)
        if last is not None and last != target.component.name and callable(release):
            release()

    def run(self, request: pytest.FixtureRequest, target: Any, gradient: bool = False) -> None:
        """Run one target: pass, or skip (unsupported), xfail (declared deviation seen), or fail
        with a rerun command and the failing inputs saved."""
        from transformer_conformance import runner

        self._release_between_components(target)
        base = self.settings
        # A gradient example costs a backward pass and six extended-precision evaluations of the
        # reference per input (a jax one also a trace): half the profile's examples.
        examples = max(2, base.max_examples // 2) if gradient else base.max_examples
        # an adapter whose library path is slow for a component says which share of the examples
        # its tests there draw (adapters/__init__.py, ``example_shares``)
        share = getattr(target.adapter.namespace, "example_shares", {}).get(target.component.name)
        if share is not None:
            examples = max(2, round(examples * share))
        record: dict[str, Any] = {"examples": 0, "unsupported": "", "ratios": []}
        self.results[request.node.nodeid] = record
        tally = runner.Tally()
        try:
            runner.run(
                target.id,
                target.subject,
                target.body(),
                declared=target.declared,
                base=base,
                max_examples=examples,
                reproduce=self.config.getoption("reproduce"),
                tally=tally,
                seed=self.config.getoption("hypothesis_seed", None),
            )
        except runner.Outcome as verdict:
            record.update(outcome=verdict.kind, reason=verdict.reason)
            if verdict.kind == "unsupported":
                if self.config.getoption("require_support"):
                    record.update(outcome="fail")
                    pytest.fail(f"--require-support: {verdict.reason}", pytrace=False)
                pytest.skip(verdict.reason)
            if verdict.kind == "deviation":
                pytest.xfail(verdict.reason)
        except Exception as e:
            record["rerun"] = self.rerun_command(
                request.node.nodeid, target, runner.reproduction(e)
            )
            e.add_note(f"rerun exactly this example: {record['rerun']}")
            inputs = getattr(e, "inputs", None)
            if inputs is not None:
                path = self.save_failure(target.id, inputs, record["rerun"], str(e))
                e.add_note(f"failing inputs saved: {path} (transformer_conformance.failures.load)")
            raise
        finally:
            record.update(examples=tally.examples, ratios=[float(f"{r:.4g}") for r in tally.ratios])
            if getattr(target.check, "kind", None) == "kernel":  # the error-vs-length report
                record["errors"] = [[float(f"{e:.4g}"), float(f"{a:.4g}")] for e, a in tally.errors]
            if tally.unsupported:
                record["unsupported"] = tally.unsupported_text()
            if tally.concerns:  # what the deviations seen are about (the scorecard's columns)
                record["concerns"] = sorted(tally.concerns)
            if tally.warnings:
                record["warnings"] = [
                    f"{w} ({n} examples)" for w, n in tally.warnings.most_common(5)
                ]
            if (
                tally.deviations
                and target.declared is not None
                and target.declared.when is not None
            ):
                shown = "; ".join(r for r, _ in tally.seen.most_common()) or str(target.declared)
                record["reason"] = (
                    f"declared deviation seen in {tally.deviations} of {tally.supported} examples: "
                    f"{shown}"
                )

    def rerun_command(self, nodeid: str, target: Any, blob: str | None) -> str:
        parts = ["pytest", nodeid, "--adapter", target.adapter.key, "-p", "no:xdist"]
        if self.config.getoption("device") != "cpu":
            parts += ["--device", self.config.getoption("device")]
        seed = self.config.getoption("hypothesis_seed", None)
        if seed is not None:
            parts.append(f"--hypothesis-seed={seed}")
        if blob:
            parts += ["--reproduce", blob]
        if self.profile not in (
            "dev",
            "ci",
        ):  # the strategies differ (free shapes): the blob needs them
            parts += ["--profile", self.profile]
        return shlex.join(parts)

    def save_failure(self, test_id: str, inputs: dict[str, Any], rerun: str, message: str) -> Path:
        from transformer_conformance import failures

        root = Path(
            self.config.getoption("report")
            or Path(tempfile.gettempdir()) / "transformer-conformance"
        )
        path = root / "failures" / failures.file_name(test_id)
        return failures.save(path, inputs, test=test_id, rerun=rerun, failure=message[:2000])

    # --- reports ---------------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        record = self.results.pop(item.nodeid, None) if report.when == "call" else None
        if record is not None:  # plain values only: execnet carries them to the controller
            report.user_properties.extend(("tcs_" + k, v) for k, v in record.items())
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props: dict[str, Any] = dict(report.user_properties)
        key = props.get("tcs")
        if key is None or (report.when == "teardown" and not report.failed):
            return
        if report.when == "setup" and report.passed:
            return
        outcome = _outcome(report, props)
        if outcome:
            self.outcomes[tuple(key[:2])][outcome] += 1
            if self.report is not None:
                self.report.add(report, outcome)
        if report.when == "call":
            examples = props.get("tcs_examples", 0)
            for group in (key[1], f"family {key[2]}"):
                self.speed[group][0] += report.duration
                self.speed[group][1] += examples
            for said in props.get("tcs_warnings") or []:
                self.warned[key[1]][said.rsplit(" (", 1)[0]] += 1
            ratios = props.get("tcs_ratios") or [0.0]
            if (
                outcome == "pass" and max(ratios) > self.worst[key[1]][0]
            ):  # how close passing tests came
                self.worst[key[1]] = (max(ratios), report.nodeid.split("[", 1)[-1].rstrip("]"))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.report is not None:
            self.report.collected = dict(self.collected)
            self.report.write()

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        from transformer_conformance.report import format_matrix

        if not self.outcomes:
            return
        terminalreporter.section("conformance matrix (component x adapter; worst outcome, tests)")
        terminalreporter.write_line(format_matrix(self.outcomes, self.collected))
        for adapter, (seconds, examples) in sorted(self.speed.items()):
            rate = examples / seconds if seconds else 0.0
            terminalreporter.write_line(
                f"{adapter}: {examples:.0f} examples in {seconds:.1f} s of test time ({rate:.0f} "
                "examples/s; summed over workers)"
            )
        if self.speed:  # times mean little without the machine's own speed beside them
            from transformer_conformance.report import machine_speed

            terminalreporter.write_line(f"machine: {machine_speed()}")
        for adapter in self.adapters:
            for said in adapter.import_warnings:
                terminalreporter.write_line(
                    f"{adapter.name}: warned when imported (not a failure): {said}"
                )
        for adapter, said in sorted(self.warned.items()):
            text = "; ".join(f"{w} ({n} tests)" for w, n in said.most_common(3))
            terminalreporter.write_line(
                f"{adapter}: its libraries warned during tests (not failures): {text}"
            )
        for adapter, keys in sorted(self.unmatched.items()):
            terminalreporter.write_line(
                f"{adapter}: declared deviations that match no test (stale?): {', '.join(keys)}"
            )
        for adapter, (ratio, test) in sorted(self.worst.items()):
            terminalreporter.write_line(
                f"{adapter}: closest a passing test came to its bound: {ratio:.2f} of allowed "
                f"({test})"
            )


def _target(item: pytest.Item) -> Any:
    target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
    return (
        target if hasattr(target, "adapter") else None
    )  # not pytest's NOTSET (an empty parametrisation)


def _outcome(report: pytest.TestReport, props: dict[str, Any]) -> str | None:
    if hasattr(report, "wasxfail"):
        return "deviation"
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        return "unsupported" if "unsupported" in reason else "skipped"
    if report.failed:
        return "fail"
    if report.when != "call":
        return None
    return "deviation not seen" if props.get("tcs_outcome") == "deviation not seen" else "pass"
