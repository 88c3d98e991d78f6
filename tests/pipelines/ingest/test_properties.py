"""Property-based ingest tests: generated deliveries, then damage; outcomes counted from the input.

Every input row is loaded (with exactly its values), quarantined, or counted as a duplicate; a file that
cannot be read fails with one line naming it. Expectations are computed from the generated input, never
from ingest's own counters. ``make test`` runs a small example budget; ``make test-thorough`` a larger one.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import functions as F

from pipelines.core.lake import Lake
from pipelines.ingest import UnreadableFileError, ingest_month
from tests.pipelines.ingest.deliveries import CDR_COLUMNS, MONTH, cdr_rows, subscriptions, typed_frame

ROW_DAMAGE = ("bad_byte", "extra_field", "missing_field")
VALID_CHANGES = ("quoted_break", "huge_field", "quote_inside", "duplicate")
FILE_DAMAGE = ("none", "truncate_gzip", "duplicate_header")
SETTINGS = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    "derandomize": True,
}


@pytest.fixture(scope="module")
def base(spark, tmp_path_factory):
    """A lake holding the subscriptions of MONTH (copied for each example)."""
    from pipelines.core.config import load_config
    from tests.conftest import TEST_CONF

    root = tmp_path_factory.mktemp("properties")
    subscriptions(root / "landing")
    cfg = load_config(
        [TEST_CONF],
        [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}", "ingest.gates.enabled=false"],
    )
    ingest_month(spark, cfg, MONTH, sources=["subscriptions"])
    return root


def _run(spark, base: Path, write) -> tuple[Lake | None, Exception | None, Path]:
    """A fresh copy of the base lake; ``write(folder)`` writes the CDR delivery; ingest it."""
    from pipelines.core.config import load_config
    from tests.conftest import TEST_CONF

    work = base / uuid.uuid4().hex[:8]
    shutil.copytree(base / "lake", work / "lake")
    folder = work / "landing" / "cdr" / f"month={MONTH}"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    write(folder)
    cfg = load_config(
        [TEST_CONF],
        [f"lake.root={work / 'lake'}", f"landing.root={work / 'landing'}", "ingest.gates.enabled=false"],
    )
    try:
        ingest_month(spark, cfg, MONTH, sources=["cdr"])
    except Exception as exc:  # judged by the caller
        return None, exc, folder
    return Lake(spark, cfg), None, folder


def _as_text(row) -> dict[str, str | None]:
    """A loaded row back in the contract's text form, to compare with the input."""
    out = {c: getattr(row, c) for c in CDR_COLUMNS}
    out["event_ts"] = row.event_ts.strftime("%Y-%m-%d %H:%M:%S")
    out["duration_s"], out["volume_kb"] = str(row.duration_s), str(row.volume_kb)
    out["roaming"] = "true" if row.roaming else "false"
    out["charge"] = f"{row.charge:.4f}"
    return out


@dataclass(frozen=True)
class CsvDelivery:
    """A drawn CSV delivery: valid rows, the changes made to them, and how the file is written."""

    rows: list[dict[str, str | None]]
    changes: list[tuple[str, int, int]]  # (change, row index, column or byte offset)
    gz: bool
    line_end: str
    bom: bool  # a byte-order mark before the header
    file_damage: str


@st.composite
def csv_deliveries(draw) -> CsvDelivery:
    n = draw(st.integers(3, 24))
    rows = cdr_rows(n)
    changes = draw(
        st.lists(
            st.tuples(st.sampled_from(ROW_DAMAGE + VALID_CHANGES), st.integers(0, n - 1), st.integers(0, 12)),
            max_size=6,
        )
    )
    return CsvDelivery(
        rows=rows,
        changes=changes,
        gz=draw(st.booleans()),
        line_end=draw(st.sampled_from(["\n", "\r\n"])),
        bom=draw(st.booleans()),
        file_damage=draw(st.sampled_from(FILE_DAMAGE)),
    )


def _render(rows, changes, line_end: str, bom: bool, file_damage: str):
    """The CSV bytes, and per input record its fate: ``bad`` rows (1-based) and expected loaded rows."""
    rows = [dict(r) for r in rows]
    bad: set[int] = set()
    bytes_at: dict[int, tuple[int, int]] = {}
    field_count: dict[int, int] = {}
    duplicates = []
    for change, i, k in changes:
        col = CDR_COLUMNS[k % len(CDR_COLUMNS)]
        if change == "quoted_break":
            rows[i]["cell_id"] = f"cell\r\n{i}, quoted"
        elif change == "huge_field":
            rows[i]["cell_id"] = "x" * 100_000
        elif change == "quote_inside":
            rows[i]["roaming_country"] = 'L"V'
        elif change == "duplicate":
            duplicates.append(i)
        elif change == "bad_byte":
            bytes_at[i] = (k % len(CDR_COLUMNS), k)
            bad.add(i)
        else:
            field_count[i] = 2 if change == "extra_field" else -1
            bad.add(i)
    buffer = io.StringIO()
    header = CDR_COLUMNS + (["charge"] if file_damage == "duplicate_header" else [])
    writer = csv.writer(buffer, lineterminator=line_end)
    writer.writerow(header)
    encoded = []
    for i, row in enumerate([*rows, *[rows[d] for d in duplicates]]):
        values = ["" if row[c] is None else row[c] for c in CDR_COLUMNS]
        if i < len(rows) and i in field_count:
            values = [*values, "x", "y"] if field_count[i] > 0 else values[:-1]
        line = io.StringIO()
        csv.writer(line, lineterminator=line_end).writerow(values)
        data = line.getvalue().encode()
        if i < len(rows) and i in bytes_at:
            col, offset = bytes_at[i]
            start = data.index(values[col].encode()) if values[col] else 0
            if not values[col]:  # an empty field: the byte goes at the field's place
                start = sum(len(v.encode()) + 1 for v in values[:col]) if col else 0
            pos = start + offset % max(1, len(values[col].encode()))
            data = data[:pos] + b"\xff" + data[pos:]
        encoded.append(data)
    body = (b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode() + b"".join(encoded)
    # a CRLF inside a quoted value loads as LF, whatever the file's own line ends (docs/tables.md)
    expected = [{**r, "cell_id": r["cell_id"].replace("\r\n", "\n") if r["cell_id"] else None} for r in rows]
    loaded = {r["record_id"]: r for i, r in enumerate(expected) if i not in bad}
    # a duplicate of a bad row is itself bad (the same damage is not repeated: it is the clean copy)
    for d in duplicates:
        if d in bad:
            loaded[rows[d]["record_id"]] = expected[d]
    return body, {i + 1 for i in bad}, loaded


@settings(max_examples=6, **SETTINGS)
@given(csv_deliveries())
def test_every_csv_row_is_loaded_quarantined_or_a_duplicate(spark, base, delivery):
    _check_csv(spark, base, delivery)


@pytest.mark.thorough
@settings(max_examples=40, **SETTINGS)
@given(csv_deliveries())
def test_every_csv_row_is_loaded_quarantined_or_a_duplicate_large_run(spark, base, delivery):
    _check_csv(spark, base, delivery)


def _check_csv(spark, base: Path, delivery) -> None:
    file_damage = delivery.file_damage
    body, bad_rows, loaded = _render(
        delivery.rows, delivery.changes, delivery.line_end, delivery.bom, file_damage
    )
    name = "delivery.csv.gz" if delivery.gz else "delivery.csv"
    if file_damage == "truncate_gzip":
        name = "delivery.csv.gz"

    def write(folder: Path) -> None:
        data = gzip.compress(body) if name.endswith(".gz") else body
        if file_damage == "truncate_gzip":
            data = data[: max(20, len(data) // 2)]
        (folder / name).write_bytes(data)

    lake, error, folder = _run(spark, base, write)
    if file_damage != "none":
        assert isinstance(error, UnreadableFileError), error
        message = str(error)
        assert "\n" not in message and str(folder / name) in message
        return
    assert error is None, error
    got = {r.record_id: _as_text(r) for r in lake.read("cdr").collect()}
    assert got == loaded
    quarantine = lake.read("quarantine").where(F.col("source") == "cdr").collect()
    assert {q.row_number for q in quarantine} == bad_rows
    assert all(q.reason for q in quarantine)


PHYSICAL = {
    "event_ts": [pa.timestamp("s"), pa.timestamp("ms"), pa.timestamp("us"), pa.timestamp("ns")],
    "duration_s": [pa.int32(), pa.int64(), pa.float64(), pa.decimal128(19, 0)],
    "volume_kb": [pa.int64(), pa.float64(), pa.decimal128(20, 0)],
    "charge": [pa.float64(), pa.decimal128(18, 4), pa.decimal128(38, 10)],
    "record_id": [pa.string(), pa.large_string(), pa.dictionary(pa.int32(), pa.string())],
}


@st.composite
def parquet_deliveries(draw):
    n = draw(st.integers(2, 20))
    files = draw(st.integers(1, 3))
    choices = [{c: draw(st.sampled_from(types)) for c, types in PHYSICAL.items()} for _ in range(files)]
    fractional = draw(st.sets(st.integers(0, n - 1), max_size=3))
    return cdr_rows(n), choices, fractional


@settings(max_examples=4, **SETTINGS)
@given(parquet_deliveries())
def test_parquet_of_any_physical_types_loads_the_same_values(spark, base, delivery):
    rows, choices, fractional = delivery
    frame = typed_frame(rows)

    def write(folder: Path) -> None:
        parts = [frame.iloc[i :: len(choices)] for i in range(len(choices))]
        for i, (part, types) in enumerate(zip(parts, choices, strict=True)):
            table = pa.Table.from_pandas(part, preserve_index=False)
            for col, kind in types.items():
                values = table.column(col)
                if col == "duration_s" and pa.types.is_floating(kind):
                    # a fractional duration is no integer: quarantined
                    bumped = [
                        v + 0.5 if int(idx) in fractional else v
                        for v, idx in zip(part["duration_s"], part.index, strict=True)
                    ]
                    values = pa.array(bumped, pa.float64())
                elif pa.types.is_timestamp(kind):
                    values = values.cast(kind)
                elif pa.types.is_dictionary(kind):
                    values = values.dictionary_encode()
                else:
                    values = values.cast(kind)
                table = table.set_column(table.schema.get_field_index(col), col, values)
            pq.write_table(table, folder / f"part-{i}.parquet", coerce_timestamps=None)

    lake, error, _ = _run(spark, base, write)
    assert error is None, error
    float_files = [i for i, t in enumerate(choices) if pa.types.is_floating(t["duration_s"])]
    bad = {i for i in fractional if i % len(choices) in float_files}
    expected = {r["record_id"]: r for i, r in enumerate(rows) if i not in bad}
    got = {r.record_id: _as_text(r) for r in lake.read("cdr").collect()}
    assert got == expected
    quarantine = lake.read("quarantine").where(F.col("source") == "cdr").collect()
    assert sorted(q.reason for q in quarantine) == ["unparseable:duration_s"] * len(bad)
