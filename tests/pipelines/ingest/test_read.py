"""Reading a delivery: every natural file loads, and no row is lost or corrupted silently.

Parquet as pandas, pyarrow (each timestamp unit), Spark (INT96), Polars and DuckDB write it, mixed with
CSV and gzip CSV in one month, must load exactly what the same rows delivered as CSV load. Hostile rows
(bad bytes anywhere, wrong field counts, quoted line breaks) get a quarantine reason and their row number.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.sql import functions as F

from pipelines.core.lake import Lake
from pipelines.ingest import ingest_month
from tests.pipelines.ingest.deliveries import (
    MONTH,
    cdr_folder,
    cdr_rows,
    csv_delivery,
    ingest_cdr,
    loaded_rows,
    quarantined,
    subscriptions,
    typed_frame,
    write_csv,
)


# ------------------------------------------------------------------------------- Parquet writers
def _spark_int96(spark, df: pd.DataFrame, path: Path, tmp: Path) -> None:
    frame = spark.createDataFrame(df).withColumns(
        {"charge": F.col("charge").cast("decimal(18,4)"), "event_ts": F.col("event_ts").cast("timestamp")}
    )
    before = spark.conf.get("spark.sql.parquet.outputTimestampType")
    spark.conf.set("spark.sql.parquet.outputTimestampType", "INT96")
    try:
        frame.coalesce(1).write.mode("overwrite").parquet(str(tmp))
    finally:
        spark.conf.set("spark.sql.parquet.outputTimestampType", before)
    shutil.copy(next(tmp.glob("part-*.parquet")), path)
    assert "int96" in str(pq.ParquetFile(path).schema)


def _duckdb(df: pd.DataFrame, path: Path) -> None:
    import duckdb

    con = duckdb.connect()
    con.register("frame", df)
    con.execute(f"COPY (SELECT * FROM frame) TO '{path}' (FORMAT parquet)")


def _polars(df: pd.DataFrame, path: Path) -> None:
    import polars as pl

    pl.from_pandas(df).write_parquet(path)


def _pyarrow(df: pd.DataFrame, path: Path, unit: str, *, zone: str | None = None) -> None:
    table = pa.Table.from_pandas(df, preserve_index=False)
    ts = table.column("event_ts").cast(pa.timestamp(unit))
    if zone:
        ts = ts.cast(pa.timestamp(unit, tz=zone))
    table = table.set_column(table.schema.get_field_index("event_ts"), "event_ts", ts)
    # the amounts as exact decimals, the durations as int32: other natural choices
    charge = pa.array([decimal.Decimal(f"{v:.4f}") for v in df["charge"]], pa.decimal128(18, 4))
    table = table.set_column(table.schema.get_field_index("charge"), "charge", charge)
    dur = table.column("duration_s").cast(pa.int32())
    table = table.set_column(table.schema.get_field_index("duration_s"), "duration_s", dur)
    pq.write_table(table, path, version="2.6", coerce_timestamps=None if unit == "ns" else unit)


def test_a_month_mixing_every_writer_loads_what_the_csv_delivery_loads(spark, make_cfg, tmp_path):
    rows = cdr_rows(64)
    chunks = [rows[i::9] for i in range(9)]  # nine files, each a different writer
    csv_landing, mixed_landing = tmp_path / "csv", tmp_path / "mixed"
    for landing in (csv_landing, mixed_landing):
        subscriptions(landing)
    write_csv(cdr_folder(csv_landing) / "all.csv", rows)
    folder = cdr_folder(mixed_landing)
    write_csv(folder / "a.csv", chunks[0])
    write_csv(folder / "b.csv.gz", chunks[1], gz=True)
    typed_frame(chunks[2]).to_parquet(folder / "c-pandas.parquet")  # pyarrow engine defaults: ns
    _pyarrow(typed_frame(chunks[3]), folder / "d-ms.parquet", "ms")
    _pyarrow(typed_frame(chunks[4]), folder / "e-us.parquet", "us")
    _pyarrow(typed_frame(chunks[5]), folder / "f-ns-utc.parquet", "ns", zone="UTC")
    _spark_int96(spark, typed_frame(chunks[6]), folder / "g-spark.parquet", tmp_path / "spark-out")
    _polars(typed_frame(chunks[7]), folder / "h-polars.parquet")
    _duckdb(typed_frame(chunks[8]), folder / "i-duckdb.parquet")
    assert pq.read_schema(folder / "c-pandas.parquet").field("event_ts").type == pa.timestamp("ns")

    csv_lake, csv_report = ingest_cdr(spark, make_cfg, csv_landing)
    mixed_lake, mixed_report = ingest_cdr(spark, make_cfg, mixed_landing)
    assert csv_report.rows_loaded == mixed_report.rows_loaded == len(rows)
    assert quarantined(mixed_lake) == []
    assert loaded_rows(mixed_lake) == loaded_rows(csv_lake)
    # and the values are the input's, not only equal to each other
    first = mixed_lake.read("cdr").where(F.col("record_id") == "R000003").first()
    assert first.event_ts == dt.datetime(2024, 3, 4, 3, 0, 21)
    assert first.charge == decimal.Decimal("0.3702") and first.duration_s == 112


def test_a_zoned_timestamp_is_an_instant_shown_in_local_time(spark, make_cfg, tmp_path):
    rows = cdr_rows(6)
    landing = tmp_path / "landing"
    subscriptions(landing)
    df = typed_frame(rows)
    df["event_ts"] = df["event_ts"].dt.tz_localize("UTC")
    df.to_parquet(cdr_folder(landing) / "zoned.parquet")
    lake, _ = ingest_cdr(spark, make_cfg, landing, "ingest.local_timezone=Europe/Vilnius")
    got = {r.record_id: r.event_ts for r in lake.read("cdr").collect()}
    # 2024-03-01 00:00:00 UTC is 02:00 in Vilnius (EET, before the switch to summer time)
    assert got["R000000"] == dt.datetime(2024, 3, 1, 2, 0, 0)


def test_parquet_values_no_contract_type_holds_are_quarantined(spark, make_cfg, tmp_path):
    rows = cdr_rows(4)
    landing = tmp_path / "landing"
    subscriptions(landing)
    table = pa.Table.from_pandas(typed_frame(rows), preserve_index=False)
    durations = pa.array([1.5, 2.0, 3e9, 4.0], pa.float64())  # fractional, whole, out of int range
    table = table.set_column(table.schema.get_field_index("duration_s"), "duration_s", durations)
    pq.write_table(table, cdr_folder(landing) / "floats.parquet")
    lake, _report = ingest_cdr(spark, make_cfg, landing)
    assert quarantined(lake) == [
        ("floats.parquet", 1, "unparseable:duration_s"),
        ("floats.parquet", 3, "unparseable:duration_s"),
    ]
    loaded = {r.record_id: r.duration_s for r in lake.read("cdr").collect()}
    assert loaded == {"R000001": 2, "R000003": 4}
    raw = lake.read("quarantine").where(F.col("row_number") == 1).first().raw_values
    assert '"duration_s":"1.5"' in raw


# ------------------------------------------------------------------------------------ hostile CSV
def test_undecodable_bytes_are_quarantined_wherever_they_sit(spark, make_cfg, tmp_path):
    rows = cdr_rows(300)
    landing, path = csv_delivery(tmp_path, "bytes.csv", rows)
    data = path.read_bytes()
    # a bad byte in row 30's record_id (near the start) and in row 200's cell_id (far past 8 KB)
    data = data.replace(b"R000029,", b"R0000\xff29,", 1)
    line = data.split(b"\n")[200]
    assert line.startswith(b"R000199,")
    fields = line.split(b",")
    fields[9] = b"C\xfe\xff"  # cell_id
    data = data.replace(line, b",".join(fields), 1)
    path.write_bytes(data)
    lake, report = ingest_cdr(spark, make_cfg, landing)
    assert quarantined(lake) == [
        ("bytes.csv", 30, "invalid_encoding:record_id"),
        ("bytes.csv", 200, "invalid_encoding:cell_id"),
    ]
    assert report.rows_loaded == 298
    assert lake.read("cdr").where(F.col("cell_id").contains("\ufffd")).count() == 0


def test_a_row_with_more_or_fewer_values_than_the_header_is_a_bad_row(spark, make_cfg, tmp_path):
    rows = cdr_rows(5)
    landing, path = csv_delivery(tmp_path, "fields.csv", rows)
    lines = path.read_text().splitlines()
    lines[2] += ",extra1,extra2"  # data row 2
    lines[4] = lines[4].rsplit(",", 2)[0]  # data row 4: two values short
    path.write_text("\n".join(lines) + "\n")
    lake, _ = ingest_cdr(spark, make_cfg, landing)
    got = quarantined(lake)
    assert [(f, r) for f, r, _ in got] == [("fields.csv", 2), ("fields.csv", 4)]
    assert {reason for _, _, reason in got} == {"wrong_field_count"}
    assert sorted(r.record_id for r in lake.read("cdr").collect()) == ["R000000", "R000002", "R000004"]


def test_quoted_line_breaks_parse_and_row_numbers_stay_right(spark, make_cfg, tmp_path):
    rows = cdr_rows(6)
    rows[1]["cell_id"] = "cell\nwith a break, and a comma"
    rows[4]["event_type"] = "video"  # a bad row after the multi-line record
    landing = tmp_path / "landing"
    subscriptions(landing)
    write_csv(cdr_folder(landing) / "quoted.csv", rows)
    lake, report = ingest_cdr(spark, make_cfg, landing)
    assert quarantined(lake) == [("quoted.csv", 5, "invalid_value:event_type")]
    cells = {r.record_id: r.cell_id for r in lake.read("cdr").collect()}
    assert cells["R000001"] == "cell\nwith a break, and a comma"
    assert report.rows_loaded == 5


def test_a_fully_quoted_file_with_escaped_quotes_loads_every_value(spark, make_cfg, tmp_path):
    rows = cdr_rows(4)
    rows[2]["cell_id"] = 'cell "north", sector 2'
    landing = tmp_path / "landing"
    subscriptions(landing)
    write_csv(cdr_folder(landing) / "all_quoted.csv", rows, quoting=csv.QUOTE_ALL)
    lake, report = ingest_cdr(spark, make_cfg, landing)
    assert quarantined(lake) == []
    cells = {r.record_id: r.cell_id for r in lake.read("cdr").collect()}
    assert cells["R000002"] == 'cell "north", sector 2'
    assert cells["R000001"] == rows[1]["cell_id"]
    assert report.rows_loaded == 4


def test_a_generated_mixed_delivery_ingests_exactly_its_faults(spark, make_cfg, tmp_path):
    """``--format mixed``: CSV, gzip CSV, Arrow-style and pandas-style Parquet in every month folder."""
    from pipelines.sample_data.writer import GenerateOptions, generate, read_faults

    landing = tmp_path / "landing"
    generate(landing, GenerateOptions(months=(MONTH,), subscribers=300, seed=5, fmt="mixed", bad_rows=0.01))
    names = sorted(p.name for p in (landing / "cdr" / f"month={MONTH}").iterdir())
    assert names == ["_SUCCESS", "part-000.csv", "part-001.parquet", "part-002.csv.gz", "part-003.parquet"]
    pandas_style = pq.read_schema(landing / "cdr" / f"month={MONTH}" / "part-003.parquet")
    assert str(pandas_style.field("event_ts").type) == "timestamp[ns]"
    assert str(pandas_style.field("charge").type) == "decimal128(18, 4)"
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false")
    reports = ingest_month(spark, cfg, MONTH, sources=["subscriptions", "cdr"])
    lake = Lake(spark, cfg)
    expected = {(f["file"], f["row"], f["reason"]) for f in read_faults(landing) if f["source"] == "cdr"}
    assert len(expected) > 20
    assert set(quarantined(lake)) == expected
    assert reports["cdr"].rows_loaded > 10_000
    # the same delivery with its checked rows cached on disk (what a large month gets) loads the same rows
    on_disk = make_cfg(
        f"landing.root={landing}", "ingest.gates.enabled=false", f"lake.root={tmp_path / 'lake_disk'}",
        "ingest.memory_cache_max_mb=0",
    )  # fmt: skip
    ingest_month(spark, on_disk, MONTH, sources=["subscriptions", "cdr"])
    disk_lake = Lake(spark, on_disk)
    assert loaded_rows(disk_lake) == loaded_rows(lake)
    assert quarantined(disk_lake) == quarantined(lake)


def test_quarantine_keeps_raw_values(ingested):
    row = ingested.lake.read("quarantine").where(F.col("reason") == "invalid_value:event_type").first()
    assert '"event_type":"video"' in row.raw_values
    assert row.row_number >= 1
