"""Benchmark-only configuration: the machine's description goes into pytest-benchmark's JSON."""

from __future__ import annotations

from typing import Any

import pytest


def pytest_benchmark_update_machine_info(
    config: pytest.Config, machine_info: dict[str, Any]
) -> None:
    from benchmarks.machine import describe

    machine_info["transformer_conformance"] = describe()
