"""The semantic profiles (reference/semantics.py): a named alternative of a convention changes the
oracle where the convention applies and nowhere else; an implementation of the canonical convention
fails under the alternative and one of the alternative passes there; a deviation declared as the
alternative is no deviation under it; a bad --semantics is a usage error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import reference
from adapters import Adapter, Deviation
from reference.semantics import CANONICAL, CONVENTIONS, parse, semantics
from spec.core import ConformanceError
from tests.meta.test_runner import _tally  # one target over the runner meta-tests' few examples

ROWS = CONVENTIONS["fully_masked_row"]


def test_a_row_without_keys_follows_the_profile() -> None:
    """softmax of a row of -inf and the context of a query that sees no key: 0, 1/S and the mean
    of V, or NaN; the row that sees a key is the same under every profile."""
    x = np.array([[-np.inf, -np.inf, -np.inf, -np.inf], [0.0, 1.0, -np.inf, 2.0]])
    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 1, 2, 3))  # (B, H, T, K)
    k, v = (rng.standard_normal((1, 1, 4, 3)) for _ in range(2))  # (B, H, S, K)
    mask = np.array([[False] * 4, [True] * 4])  # (T, S): query 0 sees no key
    canonical_seen = reference.softmax(x)[1]
    for row in ROWS:
        with semantics(fully_masked_row=row):
            y = reference.softmax(x)
            context = reference.scaled_dot_product_attention(q, k, v, mask=mask)
        want = {"zeros": np.zeros(4), "uniform": np.full(4, 0.25), "nan": np.full(4, np.nan)}[row]
        np.testing.assert_array_equal(y[0], want, err_msg=row)
        np.testing.assert_array_equal(y[1], canonical_seen, err_msg=row)
        mean_v = {"zeros": 0.0 * v[0, 0, 0], "uniform": v[0, 0].mean(0), "nan": np.nan + v[0, 0, 0]}
        np.testing.assert_allclose(context[0, 0, 0], mean_v[row], rtol=1e-12, err_msg=row)


class FixedConvention:
    """The reference as a library that always computes one convention, whatever profile the run
    checks against: a jax-like finite fill (uniform), the canonical zeros, a naive softmax (nan)."""

    def __init__(self, row: str):
        self.row = row

    def __getattr__(self, name: str) -> Any:
        fn = getattr(reference, name)

        def fixed(*args: Any, **kwargs: Any) -> Any:
            with np.errstate(invalid="ignore"), semantics(fully_masked_row=self.row):
                return fn(*args, **kwargs)

        return fixed


def _run(namespace: Any) -> None:
    _tally(None, namespace, check_name="fully_masked_rows_are_zero", variant="bool_empty_rows")


@pytest.mark.parametrize("library", ROWS)
@pytest.mark.parametrize("profile", ROWS)
def test_a_library_passes_only_under_its_own_convention(profile: str, library: str) -> None:
    """fully_masked_rows_are_zero under each profile, against a library of each convention: it
    passes exactly when the two agree."""
    with semantics(fully_masked_row=profile):
        if profile == library:
            _run(FixedConvention(library))
        else:
            with pytest.raises(ConformanceError, match="sees no key|see no key|non-finite"):
                _run(FixedConvention(library))


def test_a_declared_alternative_is_no_deviation_under_its_profile() -> None:
    """A Deviation(convention=(name, value)) is declared under every other profile and left out
    under its own, where the adapter must conform."""
    uniform = Deviation("finite fill", convention=("fully_masked_row", "uniform"))
    adapter = Adapter("planted", FixedConvention("uniform"), {"softmax.*": uniform})
    assert adapter.deviation("softmax", "matches_reference") is uniform
    with semantics(fully_masked_row="uniform"):
        assert adapter.deviation("softmax", "matches_reference") is None
    with semantics(fully_masked_row="nan"):
        assert adapter.deviation("softmax", "matches_reference") is uniform


def test_profiles_parse_and_refuse_unknown_choices() -> None:
    assert parse([]) == {}
    assert parse(["fully_masked_row=uniform"]) == {"fully_masked_row": "uniform"}
    assert CANONICAL["fully_masked_row"] == "zeros"
    for bad, said in (
        (["fully_masked_row"], "NAME=VALUE"),
        (["fully_masked_rows=zeros"], "unknown semantic convention"),
        (["fully_masked_row=mean"], "must be one of"),
    ):
        with pytest.raises(ValueError, match=said):
            parse(bad)


def test_a_bad_semantics_option_is_a_usage_error() -> None:
    """Exit code 2 and what was expected, before any test runs."""
    command = [
        sys.executable,
        "-m",
        "transformer_conformance.cli",
        "--adapter",
        "numpy",
        "--component",
        "softmax",
        "--semantics",
        "fully_masked_row=mean",
        "-p",
        "no:xdist",
        "-q",
    ]
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "must be one of" in done.stdout + done.stderr


def test_the_beam_conventions_change_the_search() -> None:
    """length_penalty=length divides by |Y|^alpha; beam_eos=frees_a_beam lets a finished
    hypothesis leave its beam to the next best live one (HF's), which changes some searches."""
    from reference.decoding import beam_search, length_penalty

    assert length_penalty(3, 1.0) == pytest.approx(8 / 6)
    with semantics(length_penalty="length"):
        assert length_penalty(3, 1.0) == 3.0
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(50):
        logits = rng.standard_normal((4, 4))
        table = logits - np.log(np.exp(logits).sum(-1, keepdims=True))  # (V, V) normalised
        args = {"logprobs": table, "bos": 0, "eos": 1, "max_len": 3, "beam_width": 2}
        with semantics(beam_eos="frees_a_beam"):
            freed = beam_search(**args)
        changed += not np.array_equal(freed, beam_search(**args))
    assert changed > 0
