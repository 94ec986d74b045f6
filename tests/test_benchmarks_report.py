"""The benchmark report: ratios per family of baselines, operations a peer cannot do, and
targets whose baseline was not measured.

Built from hand-made figures, so the rules are checked without timing anything.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmarks import peers
from benchmarks.harness import Figure, Sample
from benchmarks.report import (
    LANGGRAPH_SQLITE_WAL,
    evaluate_targets,
    family_cell,
    print_report,
    results_json,
)
from benchmarks.run import main
from benchmarks.suite import BackendResult, Comparison
from benchmarks.workload import KEY_VALUE, LANGGRAPH, ORIGINAL, RAW_DRIVER

JOURNAL = "LangGraph AsyncSqliteStore (default journal)"
DISK = "py-key-value DiskStore"


def _figure(ops_per_s: float) -> Figure:
    return Figure.of([Sample(ops=int(ops_per_s), seconds=1.0, p50_ms=1.0, p99_ms=2.0)])


def _comparison(op: str, in_flight: int, wal: float, journal: float) -> Comparison:
    """statekit at 100 ops/s against the original (20), LangGraph's store in both modes
    and the DiskStore (400), which can do set and get only."""
    measured = {
        "original": _figure(20.0),
        LANGGRAPH_SQLITE_WAL: _figure(wal),
        JOURNAL: _figure(journal),
    }
    unavailable = {} if op in ("set", "get") else {DISK: "no key enumeration"}
    if not unavailable:
        measured[DISK] = _figure(400.0)
    return Comparison(
        op=op,
        in_flight=in_flight,
        scope_size=None,
        figures={"statekit": _figure(100.0), **measured},
        statekit=("statekit",),
        baselines=tuple(measured),
        unavailable=unavailable,
        families={
            "original": (ORIGINAL, "original"),
            LANGGRAPH_SQLITE_WAL: (LANGGRAPH, "WAL"),
            JOURNAL: (LANGGRAPH, "default journal"),
            DISK: (KEY_VALUE, "DiskStore"),
        },
    )


def _result() -> BackendResult:
    main_ = [
        _comparison("get", 1, wal=50.0, journal=200.0),
        _comparison("get", 64, wal=400.0, journal=200.0),
        _comparison("snapshot", 1, wal=50.0, journal=50.0),
    ]
    return BackendResult("sqlite", "SQLite 3", "here", main_, [])


def test_a_family_cell_gives_each_member_its_ratio_and_tag_or_not_available() -> None:
    get_1, _, snapshot_1 = _result().main
    assert family_cell(get_1, LANGGRAPH) == "2.00x (WAL) / 0.50x (default journal)"
    assert family_cell(get_1, KEY_VALUE) == "0.25x (DiskStore)"
    assert family_cell(snapshot_1, KEY_VALUE) == "n/a (DiskStore)"
    assert family_cell(get_1, RAW_DRIVER) == ""


def test_the_printed_report_has_a_column_per_family_and_says_not_available() -> None:
    out = io.StringIO()
    print_report([_result()], [], out)
    text = out.getvalue()
    assert "vs LangGraph's store" in text
    assert "vs py-key-value" in text
    assert "vs raw driver" not in text  # no raw baseline on this backend
    snapshot_row = next(line for line in text.splitlines() if line.startswith("snapshot  1 "))
    assert "n/a (DiskStore)" in snapshot_row
    assert any(DISK in line and line.rstrip().endswith("n/a") for line in text.splitlines())


def test_the_json_records_what_is_not_available_and_each_baselines_family() -> None:
    document = results_json([_result()], [], {}, {})
    snapshot = document["backends"]["sqlite"]["main"][2]
    assert snapshot["unavailable"] == {DISK: "no key enumeration"}
    assert DISK not in snapshot["figures"]
    assert snapshot["families"][JOURNAL] == {"family": LANGGRAPH, "tag": "default journal"}
    assert {r["baseline"] for r in snapshot["ratios"]} == {
        "original",
        LANGGRAPH_SQLITE_WAL,
        JOURNAL,
    }


def test_targets_are_evaluated_against_the_peers_and_skipped_when_not_measured() -> None:
    result = _result()
    checked = {(t["op"], t["in_flight"], t["baseline"]): t for t in evaluate_targets([result])}
    # statekit 100 ops/s against the WAL store's 400 at 64 in flight: 0.25x < 1.5x.
    wal = checked[("get", 64, LANGGRAPH_SQLITE_WAL)]
    assert (wal["reached"], wal["minimum"], wal["met"]) == (0.25, 1.5, False)
    disk = checked[("get", 1, DISK)]
    assert (disk["reached"], disk["met"]) == (0.25, False)
    without_peers = BackendResult(
        "sqlite",
        "SQLite 3",
        "here",
        [
            Comparison("get", 64, None, {"statekit": _figure(1.0)}, ("statekit",), ()),
            Comparison("get", 1, None, {"statekit": _figure(1.0)}, ("statekit",), ()),
        ],
        [],
    )
    assert evaluate_targets([without_peers]) == []


@pytest.mark.sqlite
def test_without_the_bench_extra_a_run_says_the_peers_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(peers, "missing_modules", lambda: ["diskcache"])
    out = tmp_path / "results.json"
    assert (
        main(["--quick", "--backends", "sqlite", "--sqlite-dir", str(tmp_path), "--out", str(out)])
        == 0
    )
    captured = capsys.readouterr()
    assert "peers skipped: the bench extra is not installed (no diskcache)" in captured.err
    assert "vs LangGraph" not in captured.out
