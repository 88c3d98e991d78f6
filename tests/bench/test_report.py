"""The report against committed results: the table the benchmark printed and saved is what the typed
records recompute, and every committed file loads into the records and dumps back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import HEADER, BenchResult, load_result, render_table, write_result
from bench.scaling import ScalingResult

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
NEWEST = RESULTS / "bench-M-20261127-0934.json"


@pytest.fixture(scope="module")
def committed() -> dict:
    return json.loads(NEWEST.read_text())


def test_the_records_recompute_the_committed_table(committed: dict) -> None:
    result = BenchResult.from_dict(committed)
    assert [list(row) for row in result.table_rows()] == committed["table"]


def test_a_row_pairs_ours_with_its_reference(committed: dict) -> None:
    """One row checked by hand: its times and memory are the stage's saved figures; its ratio and rate are
    the values the benchmark printed in the file's table (44.67 s / 2.9 s, 4,633,474 CDR rows / 44.67 s)."""
    ingest = committed["ingest"]
    rows = {(r.stage, r.reference): r for r in BenchResult.from_dict(committed).table_rows()}
    row = rows[("ingest, one CDR month", "DuckDB CSV->Parquet")]
    assert row.seconds == ingest["ingest_s"]
    assert row.reference_seconds == ingest["duckdb_csv_to_parquet_s"]
    assert row.peak_mb == ingest["peak_mb"]
    assert (row.ratio, row.rows_per_s) == (15.4, 103727)
    assert rows[("score job", "-")].reference_seconds is None


def test_the_rendered_table_has_a_line_per_row_and_aligned_columns(committed: dict) -> None:
    text = render_table(load_result(NEWEST).table)
    lines = text.splitlines()
    assert len(lines) == 1 + len(committed["table"])
    assert lines[0].split() == [
        "stage",
        "ours",
        "s",
        "reference",
        "ref",
        "s",
        "ratio",
        "rows/s",
        "peak",
        "MB",
    ]
    starts = [lines[0].index(name) for name in HEADER]
    for line, row in zip(lines[1:], committed["table"], strict=True):
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        assert cells == ["-" if v is None else str(v) for v in row]


@pytest.mark.parametrize("path", sorted(RESULTS.glob("bench-*.json")), ids=lambda p: p.name)
def test_every_committed_result_round_trips(path: Path) -> None:
    data = json.loads(path.read_text())
    assert BenchResult.from_dict(data).to_dict() == data


@pytest.mark.parametrize("path", sorted(RESULTS.glob("scaling-*.json")), ids=lambda p: p.name)
def test_every_committed_scaling_result_round_trips(path: Path) -> None:
    data = json.loads(path.read_text())
    assert ScalingResult.from_dict(data).to_dict() == data


def test_an_unknown_key_is_refused(committed: dict) -> None:
    changed = {**committed, "ingest": {**committed["ingest"], "ingest_seconds": 1.0}}
    with pytest.raises(TypeError, match="ingest_seconds"):
        BenchResult.from_dict(changed)


def test_a_written_result_reads_back_as_the_same_file(committed: dict, tmp_path: Path) -> None:
    path = write_result(BenchResult.from_dict(committed), tmp_path, "20990101-0000")
    assert path.name == "bench-M-20990101-0000.json"
    assert json.loads(path.read_text()) == committed
    assert (tmp_path / "latest.json").read_text() == path.read_text()
