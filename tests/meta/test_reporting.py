"""The report writer: the matrix shows each cell's worst outcome, findings are grouped with their
dtypes."""

from __future__ import annotations

import re

from transformer_conformance.report import machine_speed, markdown

RUN = {
    "adapters": ["a", "b"],
    "versions": {"python": "3"},
    "device": "cpu",
    "max_examples": 10,
    "seed": 1,
}


def _record(adapter: str, outcome: str, dtype: str, **extra: str) -> dict:
    return {
        "adapter": adapter,
        "component": "softmax",
        "check": "matches_reference",
        "dtype": dtype,
        "outcome": outcome,
        **extra,
    }


def test_matrix_cell_is_the_worst_outcome_with_counts() -> None:
    records = [
        _record("a", "pass", "float32"),
        _record("a", "fail", "float16", failure="max |got - expected| = 1"),
        _record("b", "pass", "float32"),
        _record("b", "pass", "float16"),
    ]
    text = markdown(RUN, records)
    assert "| softmax | **FAIL** 1/2 | pass (2) |" in text, text


def test_deviations_are_grouped_across_dtypes_with_their_reason() -> None:
    records = [
        _record("a", "deviation", d, reason="NaN for all -inf") for d in ("float32", "float64")
    ]
    text = markdown({**RUN, "unmatched_deviations": {"a": ["softmax.gone"]}}, records)
    assert (
        "- `a` softmax.matches_reference @ float32, float64 (deviation): NaN for all -inf" in text
    ), text
    assert "`softmax.gone`" in text, text


def test_the_device_line_carries_the_machines_speed() -> None:
    """Times are read beside the machine's own speed: the same commit ran 3x slower on another
    host of the same kind."""
    speed = machine_speed()
    assert re.fullmatch(r"float64 matmul \d+\.\d GFLOP/s \(512\^3\), \d+ cores", speed), speed
    text = markdown({**RUN, "machine_speed": speed}, [_record("a", "pass", "float32")])
    assert f"Device: cpu, {speed}." in text, text
