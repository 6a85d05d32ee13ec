"""Tests of the suite's own helpers: tolerance policy, loader, strategies, deviation keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import reference as R
from adapters import BUILTINS, available_builtins, load_adapter
from spec.dtypes import ALL_DTYPES, FLOAT32, FLOAT64
from spec.strategies import (
    ATTENTION_BUCKETS,
    EMPTY_ROW_VARIANTS,
    MASK_VARIANTS,
    Masking,
    attention_inputs,
    masks,
)
from spec.tolerance import FLOOR_ULPS, MULTIPLIER, bound_for, compare, oracle


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_bound_is_multiple_of_same_precision_error_plus_floor(dtype) -> None:
    x = np.random.default_rng(0).standard_normal((4, 9)).astype(dtype.np_dtype)
    expected = oracle(R.softmax, {"x": x}, dtype)
    bound = bound_for(R.softmax, {"x": x}, dtype, expected, error_scale=1.0)
    same = np.abs(R.softmax(x).astype(np.longdouble) - expected).max()
    assert bound.same_precision_error == pytest.approx(float(same))
    assert bound.floor == FLOOR_ULPS * dtype.unit_roundoff
    assert bound.allowed == pytest.approx(MULTIPLIER * float(same) + bound.floor)


def test_float64_oracle_is_more_precise_than_float64() -> None:
    """The float64 same-precision error is measured against extended precision, not against
    itself."""
    x = np.random.default_rng(1).standard_normal((8, 33))
    expected = oracle(R.softmax, {"x": x}, FLOAT64)
    if np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        assert expected.dtype == np.longdouble
        assert bound_for(R.softmax, {"x": x}, FLOAT64, expected, 1.0).same_precision_error > 0


def test_compare_reports_worst_error_location_and_bound() -> None:
    expected = np.zeros((2, 3))
    got = expected.copy()
    got[1, 2] = 0.5
    bound = bound_for(
        R.softmax,
        {"x": np.zeros((2, 3), np.float32)},
        FLOAT32,
        oracle(R.softmax, {"x": np.zeros((2, 3), np.float32)}, FLOAT32),
        1.0,
    )
    result = compare(got, expected, bound, "output")
    assert not result.ok and result.where == (1, 2) and result.max_error == 0.5
    assert "at (1, 2)" in result.report() and "allowed" in result.report()


def test_compare_treats_nan_as_failure() -> None:
    got = np.array([0.0, np.nan])
    bound = bound_for(
        R.softmax, {"x": np.zeros(2)}, FLOAT64, oracle(R.softmax, {"x": np.zeros(2)}, FLOAT64), 1.0
    )
    assert not compare(got, np.zeros(2), bound).ok


def test_loader_builtins_and_third_party() -> None:
    assert "numpy" in available_builtins()
    assert set(available_builtins()) <= set(BUILTINS)
    numpy = load_adapter("numpy")
    assert numpy.name == "numpy" and numpy.function("softmax") is R.softmax
    planted = load_adapter("tests.meta.planted:mask_inverted")
    assert (
        planted.name == "mask_inverted" and planted.function("softmax") is None
    )  # -> "unsupported"
    with pytest.raises(ValueError, match="cannot load adapter"):
        load_adapter("no_such_module:adapter")


def test_deviation_keys_match_most_specific_first() -> None:
    from adapters import Adapter

    a = Adapter("x", object(), {"c.p[v]@float16": "one", "c.p": "two", "c.*@float64": "three"})
    assert str(a.deviation("c", "p", "v", "float16")) == "one"
    assert str(a.deviation("c", "p", "w", "float32")) == "two"
    assert str(a.deviation("c", "q", None, "float64")) == "three"
    assert a.deviation("d", "p", None, "float32") is None


def test_combined_deviation_names_the_parts_that_showed() -> None:
    """Several triggered declarations on one test are combined (any trigger covers an example); the
    report names the ones whose trigger held, not all of them."""
    from adapters import Adapter, Deviation

    small = Deviation("small scale", lambda i: i["scale"] < 1, "scale < 1")
    big = Deviation("big scale", lambda i: i["scale"] > 9, "scale > 9")
    combined = Adapter("x", object(), {"c.*": (small, big)}).deviation("c", "p", None, "float32")
    assert combined is not None and combined.applies([{"scale": 10}])
    assert combined.seen([{"scale": 10}]) == ["big scale (when scale > 9)"]
    assert combined.seen([{"scale": 0.5}, {"scale": 10}]) == [str(small), str(big)]


@pytest.mark.parametrize("variant", MASK_VARIANTS + EMPTY_ROW_VARIANTS, ids=str)
@given(data=st.data())
def test_mask_strategies_keep_or_empty_rows_as_named(variant, data: st.DataObject) -> None:
    bottom_right = variant.causal == "bottom_right"
    where = (
        (lambda s: s.T > s.S)
        if bottom_right and variant.empty
        else (lambda s: s.T <= s.S)
        if bottom_right
        else None
    )
    x = data.draw(attention_inputs(FLOAT32, where), label="qkv")
    m = data.draw(masks(x.shape, variant, FLOAT32), label="mask")
    rows_with_keys = m.allowed.any(-1)
    if variant.empty:
        assert not rows_with_keys.all(), "an empty-row variant must produce a fully masked row"
    else:
        assert rows_with_keys.all(), "a normal variant must leave every row a visible key"
    weights = R.attention_weights(x.q, x.k, mask=m.mask, causal=m.causal)
    assert ((weights > 0) <= m.allowed).all()
    assert Masking.parse(str(variant)) == variant, "a variant's test id names it"


def test_buckets_cover_the_edge_shapes() -> None:
    assert any(s.T == 1 and s.S == 1 for s in ATTENTION_BUCKETS)
    assert any(s.T < s.S for s in ATTENTION_BUCKETS) and any(s.T > s.S for s in ATTENTION_BUCKETS)
    assert any(s.K != s.Kv for s in ATTENTION_BUCKETS)


def test_paths_read_and_replace_nested_inputs_without_mutating() -> None:
    from reference.autodiff import get_path, set_path

    inputs = {"x": np.zeros(2), "params": {"w_q": np.ones(3)}}
    changed = set_path(inputs, "params.w_q", np.full(3, 2.0))
    assert get_path(changed, "params.w_q")[0] == 2.0 and get_path(inputs, "params.w_q")[0] == 1.0
    assert changed["x"] is inputs["x"]


def test_directional_derivative_matches_the_analytic_softmax_vjp() -> None:
    """The oracle's central difference along t equals <softmax VJP(c), t>, and its error estimate is
    small."""
    from reference import softmax
    from reference.gradients import softmax_vjp
    from spec.gradients import directional_derivative

    rng = np.random.default_rng(0)
    x, c, t = rng.standard_normal((3, 5)), rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    oracle = directional_derivative(softmax, {"x": x, "axis": -1}, "x", t, c, e=1e-6, scale=1.0)
    exact = float((softmax_vjp(x, -1, c)[0]["x"] * t).sum())
    assert abs(oracle.value - exact) <= oracle.error, (oracle.value, exact, oracle.error)
    # fine enough to judge float32 gradients: its own error is below one float32 rounding of the
    # answer
    assert oracle.error < FLOAT32.unit_roundoff * abs(exact), (oracle.error, exact)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_saturated_gates_same_precision_term_covers_the_output_form(cell) -> None:
    """At gates saturated in float32 (|preactivation| ~ 20), a backward computed from the outputs
    (torch, jax: 1 - y^2, y (1 - y)) is exactly 0; the policy's same-precision term must be at least
    the whole true gradient there, or a correct framework fails (sweep seed 7, docs/ERRATA.md
    1.2.0)."""
    from reference.autodiff import vjp
    from spec.gradients import WIDE, SamePrecision

    rng = np.random.default_rng(1)
    E, N, B = 3, 2, 2
    G = {"rnn": 1, "gru": 3, "lstm": 4}[cell] * N
    params = {
        "w_x": np.full((E, G), 1.0, np.float32),
        "w_h": np.zeros((N, G), np.float32),
        "b_x": np.zeros(G, np.float32),
        "b_h": np.zeros(G, np.float32),
    }
    x = np.full((B, E), 7.0, np.float32)  # every preactivation 21: sigma, tanh round to 1
    width = 2 * N if cell == "lstm" else N
    inputs = {"x": x, "state": np.zeros((B, width), np.float32), "params": params, "cell": cell}
    c = rng.standard_normal((B, width)).astype(np.float32)
    (from_input,) = vjp(R.recurrent_cell, inputs, c, (("x",),))
    (from_output,) = vjp(R.recurrent_cell, inputs, c, (("x",),), output_form=True)
    wide_inputs = {**inputs, "x": x.astype(WIDE), "state": inputs["state"].astype(WIDE)}
    wide_inputs["params"] = {k: v.astype(WIDE) for k, v in params.items()}
    (wide,) = vjp(R.recurrent_cell, wide_inputs, c.astype(WIDE), (("x",),))
    assert np.all(from_output == 0), from_output
    assert np.abs(wide).max() > 0 and np.allclose(from_input, wide.astype(np.float64), rtol=1e-4)

    class Subject:  # SamePrecision.of reads only the component's name and reference, the dtype
        dtype = FLOAT32

        class component:
            name, reference = "recurrent_cell", staticmethod(R.recurrent_cell)

    same = SamePrecision.of(Subject, inputs, c, ("x",))  # type: ignore[arg-type]
    t = np.ones(x.shape)
    truth = float((wide.astype(np.float64) * t).sum())
    assert same.error("x", t, truth) >= abs(truth), (same.error("x", t, truth), truth)
