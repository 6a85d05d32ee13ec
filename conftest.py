"""Root pytest configuration: adapter selection, devices, Hypothesis profiles, the conformance matrix."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

# JAX would take 75% of a GPU's memory when its backend starts, leaving torch (same process, --device cuda,
# the benchmarks) to run out: allocate on demand instead. Must precede the first jax import.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

from adapters import available_builtins, load_adapter  # noqa: E402

# Hypothesis profiles. `ci` is derandomized (the same examples every run) and the default under CI;
# `dev` is quick and random; `thorough` draws many more examples and free shapes as well as buckets.
# Deadlines are off: JAX compiles on a shape's first call; hangs are pytest-timeout's job.
_common = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=10, **_common)
settings.register_profile("ci", max_examples=10, derandomize=True, database=None, **_common)
settings.register_profile("thorough", max_examples=200, phases=list(Phase), **_common)
if os.environ.get("HYPOTHESIS_PROFILE") == "thorough":
    os.environ.setdefault("TCS_FREE_SHAPES", "1")
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("conformance")
    group.addoption(
        "--adapter",
        action="append",
        default=[],
        metavar="NAME|module:object",
        help="adapter to check: a built-in (numpy, torch, jax) or a third party's module:object; repeatable. "
        "Default: numpy, torch and jax, those installed; third-party adapters (keras) run when named.",
    )
    group.addoption("--device", default="cpu", choices=["cpu", "cuda"], help="device the adapters run on (default cpu)")
    group.addoption("--component", action="append", default=[], help="only these components (repeatable)")
    group.addoption("--max-examples", type=int, default=None, help="Hypothesis examples per test (overrides the profile's)")
    group.addoption(
        "--report", default=None, metavar="DIR", help="write DIR/conformance.json and DIR/CONFORMANCE.md (tests/reporting.py)"
    )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("max_examples"):
        settings.register_profile("cli", settings(settings.default, max_examples=config.getoption("max_examples")))
        settings.load_profile("cli")
    names = config.getoption("adapter") or available_builtins()
    try:
        config._tcs_adapters = [load_adapter(n, config.getoption("device")) for n in names]  # type: ignore[attr-defined]
    except Exception as e:  # a broken --adapter is a usage error, not 500 test failures
        raise pytest.UsageError(str(e)) from e
    if config.getoption("report") and not hasattr(config, "workerinput"):  # the xdist controller writes it
        from tests.reporting import Report

        config._tcs_report = Report(Path(config.getoption("report")), config)  # type: ignore[attr-defined]
        _REPORT.append(config._tcs_report)  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session) -> None:
    report = getattr(session.config, "_tcs_report", None)
    if report is not None:
        report.write()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    from tests.targets import bad_input_targets, property_targets

    adapters = metafunc.config._tcs_adapters  # type: ignore[attr-defined]
    components = metafunc.config.getoption("component") or None
    if "target" in metafunc.fixturenames:
        name = metafunc.function.__name__
        if name == "test_refuses_bad_input":
            targets = bad_input_targets(adapters, components)
        else:
            targets = property_targets(adapters, components, "gradient" if name == "test_gradient_property" else "forward")
        metafunc.parametrize("target", [t.param() for t in targets])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    matched: dict[str, set[str]] = defaultdict(set)
    components: set[str] = set()
    for item in items:
        target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
        if hasattr(target, "adapter"):  # not pytest's NOTSET, which an empty parametrisation leaves
            matched[target.adapter.name].update(target.deviation_keys())
            components.add(target.component.name)
    for adapter in getattr(config, "_tcs_adapters", []):  # a declaration that matches no collected test
        stale = sorted(k for k in adapter.deviations if k.split(".")[0] in components and k not in matched[adapter.name])
        if stale:
            _UNMATCHED[adapter.name] = stale
            if _REPORT:
                _REPORT[0].unmatched[adapter.name] = stale
    for item in items:
        target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
        if hasattr(target, "adapter"):  # carried to the controller under xdist, for the matrix
            key = (target.component.name, target.adapter.name, target.component.family, target.property_name, target.dtype.name)
            item.user_properties.append(("tcs", key))


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> object:
    """A declared deviation (xfail) is expected to fail: run it without Hypothesis' shrink phase, which
    would only make the expected counterexample minimal (measured: 7-11 s for one jax test, of 117 such
    in the default run). Every other test shrinks as usual. Hypothesis reads a test's settings from this
    attribute at each call, so it is swapped for this call only."""
    fn = pyfuncitem.obj
    current = getattr(fn, "_hypothesis_internal_use_settings", None)
    if current is None or pyfuncitem.get_closest_marker("xfail") is None:
        return (yield)
    fn._hypothesis_internal_use_settings = settings(current, phases=[p for p in current.phases if p != Phase.shrink])
    try:
        return (yield)
    finally:
        fn._hypothesis_internal_use_settings = current


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    report = yield
    target = getattr(getattr(item, "callspec", None), "params", {}).get("target")
    if target is not None and report.when == "call":
        from tests.targets import EXAMPLES, WORST_RATIO

        report.user_properties.append(("examples", EXAMPLES.pop(target.id, 0)))
        report.user_properties.append(("worst_ratio", WORST_RATIO.pop(target.id, 0.0)))
    return report


def _outcome(report: pytest.TestReport) -> str | None:
    if hasattr(report, "wasxfail"):
        return "deviation (now conforms)" if report.passed else "deviation"
    if report.skipped:
        reason = str(report.longrepr[-1]) if isinstance(report.longrepr, tuple) else ""
        return "unsupported" if "unsupported" in reason else "skipped"
    if report.failed:
        return "fail"
    return "pass" if report.when == "call" else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    key = dict(report.user_properties).get("tcs")
    if key is None or (report.when == "teardown" and not report.failed):
        return
    if report.when == "setup" and report.passed:
        return
    outcome = _outcome(report)
    if outcome:
        _OUTCOMES[tuple(key[:2])][outcome] += 1
        if _REPORT:
            _REPORT[0].add(report, outcome)
    if report.when == "call":
        examples = dict(report.user_properties).get("examples", 0)
        for group in (key[1], f"family {key[2]}"):
            _SPEED[group][0] += report.duration
            _SPEED[group][1] += examples
        if report.passed and not hasattr(report, "wasxfail"):  # passing tests: how close to the bound they ran
            ratio = dict(report.user_properties).get("worst_ratio", 0.0)
            if ratio > _WORST[key[1]][0]:
                _WORST[key[1]] = (ratio, report.nodeid.split("[", 1)[-1].rstrip("]"))


_OUTCOMES: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
_REPORT: list = []  # the --report collector, once configured
_UNMATCHED: dict[str, list[str]] = {}  # adapter -> declared deviations no collected test can match
_WORST: dict[str, tuple[float, str]] = defaultdict(lambda: (0.0, ""))  # adapter -> (observed/allowed, test)
_SPEED: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # adapter or "family X" -> [test seconds, examples]


def format_matrix(outcomes: dict[tuple[str, str], dict[str, int]]) -> str:
    """component x adapter: the worst outcome of the cell's tests, with counts (tests/reporting.py's cells)."""
    from tests.reporting import cell_text

    components = sorted({c for c, _ in outcomes})
    adapters = sorted({a for _, a in outcomes})
    width = max([len("component")] + [len(c) for c in components]) + 2
    cols = [max(len(a), 24) for a in adapters]
    lines = ["component".ljust(width) + "".join(a.ljust(w + 2) for a, w in zip(adapters, cols, strict=True))]
    for c in components:
        cells = (cell_text(outcomes.get((c, a), {})).ljust(w + 2) for a, w in zip(adapters, cols, strict=True))
        lines.append(c.ljust(width) + "".join(cells))
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _OUTCOMES:
        terminalreporter.section("conformance matrix (component x adapter; worst outcome, tests)")
        terminalreporter.write_line(format_matrix(_OUTCOMES))
        for adapter, (seconds, examples) in sorted(_SPEED.items()):
            rate = examples / seconds if seconds else 0.0
            terminalreporter.write_line(
                f"{adapter}: {examples:.0f} examples in {seconds:.1f} s of test time ({rate:.0f} examples/s; summed over workers)"
            )
        for adapter, keys in sorted(_UNMATCHED.items()):
            terminalreporter.write_line(f"{adapter}: declared deviations that match no test (stale?): {', '.join(keys)}")
        for adapter, (ratio, test) in sorted(_WORST.items()):
            terminalreporter.write_line(f"{adapter}: closest a passing test came to its bound: {ratio:.2f} of allowed ({test})")
