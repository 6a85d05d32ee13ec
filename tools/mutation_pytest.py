"""pytest plugin for `make mutation` only (loaded by tools/mutation.py through PYTEST_ADDOPTS).

* The `ci` profile without Hypothesis' shrink and explain phases. They run only after a test has
  already failed, i.e. after the mutant is killed, and took 20-30 s per killed mutant of the
  layers; no verdict changes.
* ``--require-support`` (a test none of whose examples the adapter could express fails, so a
  mutant that turns every example "unsupported" is killed) is lifted for the tests that the
  unmutated adapter cannot express either (jax has no soft-cap, for instance). tools/mutation.py
  finds them with one baseline run, which writes the ids of its skipped tests to the file in
  $TCS_MUTATION_SKIPPED_OUT; the mutant runs read them from $TCS_MUTATION_SKIPPED.
"""

import os
from pathlib import Path

import pytest
from hypothesis import Phase

from transformer_conformance import plugin

plugin.PROFILES["ci"] = {
    **plugin.PROFILES["ci"],
    "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.target],
}

_SKIPPED_IN = os.environ.get("TCS_MUTATION_SKIPPED")
_UNSUPPORTED = set(Path(_SKIPPED_IN).read_text().split("\n")) if _SKIPPED_IN else set()
_SKIPPED_OUT = os.environ.get("TCS_MUTATION_SKIPPED_OUT")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):  # type: ignore[no-untyped-def]
    required = item.config.option.require_support
    if item.nodeid in _UNSUPPORTED:
        item.config.option.require_support = False
    try:
        return (yield)
    finally:
        item.config.option.require_support = required


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    skipped = report.when == "call" and report.skipped and not hasattr(report, "wasxfail")
    if _SKIPPED_OUT and skipped:
        with open(_SKIPPED_OUT, "a") as out:
            out.write(report.nodeid + "\n")
