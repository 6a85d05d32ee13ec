"""The scorecard (transformer_conformance/scorecard.py) says what each result says: a passing
convention is "as spec", a failing or deviating one "differs" with its reason and rerun command, a
component not offered "-"."""

from __future__ import annotations

import json
from pathlib import Path

from transformer_conformance import scorecard


def _result(adapter: str, component: str, check: str, outcome: str, **extra: object) -> dict:
    test = f"t.py::test_property[{adapter}-{component}.{check}-float32]"
    base = {"dtype": "float32", "reason": "", "test": test}
    return (
        base
        | {"adapter": adapter, "component": component, "check": check, "outcome": outcome}
        | extra
    )


def test_cells_follow_the_outcomes(tmp_path: Path) -> None:
    results = [
        _result("good", "grouped_query_attention", "matches_reference[none]", "pass"),
        _result("bad", "grouped_query_attention", "matches_reference[none]", "pass"),
        _result(
            "bad",
            "grouped_query_attention",
            "kv_head_feeds_its_group[none]",
            "deviation",
            reason="declared deviation seen in 3 of 10 examples: heads interleaved",
        ),
        _result(  # a pass whose triggered deviation showed in some examples still differs
            "capless",
            "variant_attention",
            "matches_reference[softcap]",
            "pass",
            reason="declared deviation seen in 1 of 5 examples: the cap is dropped (when a cap)",
        ),
        _result("capless", "variant_attention", "hidden_keys_weigh_exactly_zero[softcap]", "pass"),
        _result(
            "good",
            "rotary_embedding",
            "matches_reference[half]",
            "unsupported",
            reason="unsupported: adapter good does not offer rotary_embedding",
        ),
    ]
    (tmp_path / "conformance.json").write_text(json.dumps({"run": {}, "results": results}))
    assert scorecard.main([str(tmp_path), "--out", str(tmp_path / "S.md")]) == 0
    text = (tmp_path / "S.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line
        for line in text.splitlines()
        if line.startswith("| ")
    }
    gqa = [c.title for c in scorecard.COLUMNS].index("GQA head map") + 1
    rope = [c.title for c in scorecard.COLUMNS].index("RoPE layout") + 1
    cells = {name: [c.strip() for c in row.strip("|").split("|")] for name, row in rows.items()}
    assert cells["good"][gqa] == "as spec (1)", cells["good"]
    assert cells["bad"][gqa].startswith("differs 1/2 ["), cells["bad"]
    assert cells["good"][rope] == "-", cells["good"]
    cap = [c.title for c in scorecard.COLUMNS].index("soft-cap order") + 1
    assert cells["capless"][cap].startswith("differs 1/2 ["), cells["capless"]
    assert "heads interleaved" in text and "--adapter bad" in text, text


def test_missing_report_is_a_usage_error(tmp_path: Path) -> None:
    assert scorecard.main([str(tmp_path / "nowhere")]) == 2


def test_a_report_under_another_semantic_profile_is_refused(tmp_path: Path) -> None:
    """The scorecard compares libraries with the canonical conventions: a --semantics run would
    mix two specs' verdicts."""
    result = _result("jax", "softmax", "matches_reference", "pass")
    run = {"semantics": {"fully_masked_row": "uniform"}}
    (tmp_path / "conformance.json").write_text(json.dumps({"run": run, "results": [result]}))
    assert scorecard.main([str(tmp_path), "--out", str(tmp_path / "S.md")]) == 2
    assert not (tmp_path / "S.md").exists()


def test_every_run_is_cited_with_its_spec_version(tmp_path: Path) -> None:
    """Reports of several runs make one table: each run is listed with its adapters, spec version
    and command, so a reader sees which cells come from an older spec."""
    for name, version in (("old", "1.3.0"), ("new", "1.8.0")):
        folder = tmp_path / name
        folder.mkdir()
        run = {"adapters": [name], "spec_version": version, "command": f"pytest --adapter {name}"}
        result = _result(name, "softmax", "matches_reference", "pass")
        (folder / "conformance.json").write_text(json.dumps({"run": run, "results": [result]}))
    out = tmp_path / "S.md"
    assert scorecard.main([str(tmp_path / "old"), str(tmp_path / "new"), "--out", str(out)]) == 0
    text = out.read_text()
    for name, version in (("old", "1.3.0"), ("new", "1.8.0")):
        line = f"- {name}: spec {version}, profile ?, `pytest --adapter {name}`"
        assert line in text, text


def _cells(tmp_path: Path, results: list[dict]) -> tuple[dict[str, list[str]], str]:
    (tmp_path / "conformance.json").write_text(json.dumps({"run": {}, "results": results}))
    assert scorecard.main([str(tmp_path), "--out", str(tmp_path / "S.md")]) == 0
    text = (tmp_path / "S.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    cells = {}
    for row in rows:
        parts = [c.strip() for c in row.strip("|").split("|")]
        cells[parts[0]] = parts
    return cells, text


def test_a_deviation_counts_against_the_columns_it_concerns(tmp_path: Path) -> None:
    """A window test in which a scale <= 0 deviation showed says nothing about windows: the window
    column stays "as spec" and the deviation is listed under "other declared deviations"; one
    about windows, or one that states no concern (an older report), makes the column differ."""
    seen = "declared deviation seen in 2 of 10 examples: "
    results = [
        _result(
            "scaled",
            "variant_attention",
            "matches_reference[window]",
            "pass",
            reason=seen + "NaN at scale <= 0 (when scale <= 0)",
            concerns=["scale"],
        ),
        _result(
            "narrow",
            "variant_attention",
            "matches_reference[window]",
            "pass",
            reason=seen + "the window is one key short (when a window)",
            concerns=["window"],
        ),
        _result(
            "unstated",
            "variant_attention",
            "matches_reference[window]",
            "pass",
            reason=seen + "something (when anything)",
        ),
        _result(  # no fully-masked-row column reads a stack's test: the deviation shows in OTHER
            "stacked",
            "encoder",
            "matches_reference[post_ln+masked]",
            "pass",
            reason=seen + "NaN for a row that sees no key (when a row sees no key)",
            concerns=["fully_masked_row"],
            dtype="float64",
        ),
    ]
    cells, text = _cells(tmp_path, results)
    titles = [c.title for c in (*scorecard.COLUMNS, scorecard.DECODING, scorecard.FLOAT64)]
    window = titles.index("window") + 1
    other = len(titles) + 2  # after "bad input refused"
    assert cells["scaled"][window] == "as spec (1)", cells["scaled"]
    assert cells["scaled"][other].startswith("scale (1) ["), cells["scaled"]
    assert "NaN at scale <= 0" in text and "--adapter scaled" in text, text
    assert cells["narrow"][window].startswith("differs 1/1 ["), cells["narrow"]
    assert cells["narrow"][other] == "none", cells["narrow"]
    assert cells["unstated"][window].startswith("differs 1/1 ["), cells["unstated"]
    assert cells["stacked"][other].startswith("fully masked row (1) ["), cells["stacked"]
    assert "NaN for a row that sees no key" in text, text
