"""Ingest accepts every natural file and never loses or corrupts a row silently.

Parquet as pandas, pyarrow (each timestamp unit), Spark (INT96), Polars and DuckDB write it, mixed with
CSV and gzip CSV in one month, must load exactly what the same rows delivered as CSV load. Hostile CSV
(bad bytes anywhere, wrong field counts, quoted line breaks, a byte-order mark, truncated gzip, a column
twice in the header) gets a quarantine reason or a one-line error naming the file.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import gzip
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from features import contract as C
from pipelines.core.lake import Lake
from pipelines.ingest import UnreadableFileError, _has_quoted_line_break, ingest_month

MONTH = "2024-03"
NUMBERS = [f"3706{i:05d}" for i in range(6)]
CDR_COLUMNS = list(C.columns("cdr"))


def cdr_rows(n: int = 48) -> list[dict[str, str]]:
    """Valid CDR rows as contract text: every type, nulls in the nullable columns, edge values."""
    rows = []
    for i in range(n):
        kind = ("voice", "sms", "data")[i % 3]
        ts = dt.datetime(2024, 3, 1) + dt.timedelta(days=i % 31, seconds=i * 3607 % 86400)
        rows.append(
            {
                "record_id": f"R{i:06d}",
                "msisdn": NUMBERS[i % len(NUMBERS)],
                "event_ts": ts.strftime("%Y-%m-%d %H:%M:%S"),
                "event_type": kind,
                "direction": "out" if kind == "data" or i % 2 else "in",
                "duration_s": str(0 if kind == "sms" else 1 + i * 37),
                "volume_kb": str(i * 1_000_003 if kind == "data" else 0),
                "other_party": None if kind == "data" else f"{i:064x}",
                "other_party_operator": None if kind == "data" else ("own", "OP_B", "fixed")[i % 3],
                "cell_id": None if i % 7 == 0 else f"C{i % 11}",
                "roaming": "true" if i % 5 == 0 else "false",
                "roaming_country": "LV" if i % 5 == 0 else None,
                "charge": f"{(i * 0.1234) % 7:.4f}",
            }
        )
    return rows


def typed_frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    """The rows as pandas would hold them (datetime64[ns], int64, float64, bool, object)."""
    df = pd.DataFrame(rows, columns=CDR_COLUMNS)
    df["event_ts"] = pd.to_datetime(df["event_ts"])
    for c in ("duration_s", "volume_kb"):
        df[c] = df[c].astype("int64")
    df["charge"] = df["charge"].astype("float64")
    df["roaming"] = df["roaming"] == "true"
    return df


def write_csv(
    path: Path,
    rows: list[dict[str, str]],
    *,
    columns=CDR_COLUMNS,
    gz: bool = False,
    quoting=csv.QUOTE_MINIMAL,
) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, quoting=quoting)
        writer.writeheader()
        writer.writerows(rows)


def subscriptions(root: Path) -> None:
    folder = root / "subscriptions" / f"month={MONTH}"
    folder.mkdir(parents=True)
    rows = [
        {
            "subscriber_id": f"S{i}",
            "msisdn": number,
            "customer_id": f"C{i}",
            "segment": "consumer",
            "plan_type": "postpaid",
            "plan_id": "P1",
            "monthly_fee": "20.00",
            "activation_date": "2022-01-01",
            "status": "active",
            "acquisition_channel": "store",
            "region": "north",
            "marketing_consent": "true",
            "snapshot_date": "2024-03-31",
        }
        for i, number in enumerate(NUMBERS)
    ]
    write_csv(folder / "part-0.csv", rows, columns=list(C.columns("subscriptions")))
    (folder / "_SUCCESS").touch()


def cdr_folder(root: Path) -> Path:
    folder = root / "cdr" / f"month={MONTH}"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    return folder


def csv_delivery(tmp_path: Path, name: str, rows: list[dict[str, str]]) -> tuple[Path, Path]:
    """A landing zone with the subscriptions and one CDR CSV file; returns the landing root and the file."""
    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / name
    write_csv(path, rows)
    return landing, path


def ingest(spark, make_cfg, landing: Path, *overrides: str):
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false", *overrides)
    ingest_month(spark, cfg, MONTH, sources=["subscriptions"])
    report = ingest_month(spark, cfg, MONTH, sources=["cdr"])["cdr"]
    return Lake(spark, cfg), report


def loaded_rows(lake: Lake) -> list[tuple]:
    df = lake.read("cdr")
    return sorted((tuple(r) for r in df.select(*sorted(df.columns)).collect()), key=repr)


def quarantined(lake: Lake) -> list[tuple]:
    q = lake.read("quarantine").where(F.col("source") == "cdr")
    return sorted((r.file, r.row_number, r.reason) for r in q.collect())


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

    csv_lake, csv_report = ingest(spark, make_cfg, csv_landing)
    mixed_lake, mixed_report = ingest(spark, make_cfg, mixed_landing)
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
    lake, _ = ingest(spark, make_cfg, landing, "ingest.local_timezone=Europe/Vilnius")
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
    lake, _report = ingest(spark, make_cfg, landing)
    assert quarantined(lake) == [
        ("floats.parquet", 1, "unparseable:duration_s"),
        ("floats.parquet", 3, "unparseable:duration_s"),
    ]
    loaded = {r.record_id: r.duration_s for r in lake.read("cdr").collect()}
    assert loaded == {"R000001": 2, "R000003": 4}
    raw = lake.read("quarantine").where(F.col("row_number") == 1).first().raw_values
    assert '"duration_s":"1.5"' in raw


def test_a_parquet_column_of_no_contract_type_fails_the_file_naming_the_column(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    table = pa.Table.from_pandas(typed_frame(cdr_rows(3)), preserve_index=False)
    nested = pa.array([{"a": 1}] * 3)
    table = table.set_column(table.schema.get_field_index("cell_id"), "cell_id", nested)
    pq.write_table(table, cdr_folder(landing) / "nested.parquet")
    with pytest.raises(UnreadableFileError, match=r"nested\.parquet: column cell_id has type struct"):
        ingest(spark, make_cfg, landing)


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
    lake, report = ingest(spark, make_cfg, landing)
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
    lake, _ = ingest(spark, make_cfg, landing)
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
    lake, report = ingest(spark, make_cfg, landing)
    assert quarantined(lake) == [("quoted.csv", 5, "invalid_value:event_type")]
    cells = {r.record_id: r.cell_id for r in lake.read("cdr").collect()}
    assert cells["R000001"] == "cell\nwith a break, and a comma"
    assert report.rows_loaded == 5


@pytest.mark.parametrize(
    ("text", "needs_whole_records"),
    [
        (b'"a","b"\n"1","x"\n', False),  # every field quoted, as many exporters write them
        (b'a,b\n1,"he said ""hi"", twice"\n2,3\n', False),  # escaped quotes on one line
        (b"a,b\n1,2", False),
        (b'a,b\n1,"x\ny"\n', True),
        (b'a,b\r\n1,"x\r\ny"\r\n', True),
        (b'a,b\n1,"x ""\ny"""\n', True),  # the break sits after an escaped quote
    ],
)
def test_only_a_line_break_inside_quotes_makes_a_file_unsplittable(tmp_path, text, needs_whole_records):
    path = tmp_path / "f.csv"
    path.write_bytes(text)
    assert _has_quoted_line_break(path) is needs_whole_records


def test_a_fully_quoted_file_with_escaped_quotes_loads_every_value(spark, make_cfg, tmp_path):
    rows = cdr_rows(4)
    rows[2]["cell_id"] = 'cell "north", sector 2'
    landing = tmp_path / "landing"
    subscriptions(landing)
    write_csv(cdr_folder(landing) / "all_quoted.csv", rows, quoting=csv.QUOTE_ALL)
    lake, report = ingest(spark, make_cfg, landing)
    assert quarantined(lake) == []
    cells = {r.record_id: r.cell_id for r in lake.read("cdr").collect()}
    assert cells["R000002"] == 'cell "north", sector 2'
    assert cells["R000001"] == rows[1]["cell_id"]
    assert report.rows_loaded == 4


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(spark, make_cfg, tmp_path):
    rows = cdr_rows(4)
    landing, path = csv_delivery(tmp_path, "bom.csv", rows)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    lake, report = ingest(spark, make_cfg, landing)
    assert report.rows_loaded == 4 and quarantined(lake) == []
    assert sorted(r.record_id for r in lake.read("cdr").collect())[0] == "R000000"


def test_a_truncated_gzip_fails_its_source_with_one_line_and_a_data_quality_row(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / "cut.csv.gz"
    write_csv(path, cdr_rows(2000), gz=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false")
    ingest_month(spark, cfg, MONTH, sources=["subscriptions"])
    with pytest.raises(UnreadableFileError) as caught:
        ingest_month(spark, cfg, MONTH, sources=["cdr"])
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400
    assert message.startswith(f"{path}: truncated or corrupt gzip")
    lake = Lake(spark, cfg)
    assert not lake.exists("cdr")
    dq = lake.read("data_quality").where(F.col("source") == "cdr").first()
    assert dq.publishable is False and "cut.csv.gz" in dq.gate_failures


def test_a_column_twice_in_the_header_names_the_file_and_the_column(spark, make_cfg, tmp_path):
    landing = tmp_path / "landing"
    subscriptions(landing)
    write_csv(cdr_folder(landing) / "twice.csv", [], columns=[*CDR_COLUMNS, "charge"])
    with pytest.raises(UnreadableFileError, match=r"twice\.csv: column charge appears twice in the header"):
        ingest(spark, make_cfg, landing)


def test_the_job_prints_one_line_for_an_unreadable_file(make_cfg, tmp_path, capsys):
    from jobs.ingest import main
    from tests.conftest import TEST_CONF

    landing = tmp_path / "landing"
    subscriptions(landing)
    path = cdr_folder(landing) / "cut.csv.gz"
    write_csv(path, cdr_rows(2000), gz=True)
    path.write_bytes(path.read_bytes()[:3000])
    code = main(
        [
            "--month",
            MONTH,
            "--conf",
            str(TEST_CONF),
            "--set",
            f"lake.root={tmp_path / 'lake'}",
            "--set",
            f"landing.root={landing}",
            "--sources",
            "cdr",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ERROR ingest: UnreadableFileError: ") and "cut.csv.gz" in err[-1]
    assert len(err[-1]) < 400


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


def test_a_large_delivery_is_cached_on_disk_and_a_small_one_in_memory(spark, tmp_path):
    from pyspark import StorageLevel

    from pipelines.ingest import _cache_checked, delivery_text_mb, list_delivery

    _, first = csv_delivery(tmp_path, "part-000.csv", cdr_rows(400))
    folder = first.parent
    shutil.copy(first, folder / "part-001.csv")
    with gzip.open(folder / "part-002.csv.gz", "wb") as out:
        out.write(first.read_bytes())
    files, _ = list_delivery(folder, "cdr", allow_incomplete=True)
    plain, packed = first.stat().st_size, (folder / "part-002.csv.gz").stat().st_size
    assert delivery_text_mb(files) == pytest.approx((2 * plain + 5 * packed) / 2**20)
    df = spark.range(10)
    cached = _cache_checked(spark, df, files, memory_max_mb=0)
    assert cached.storageLevel == StorageLevel.DISK_ONLY
    cached.unpersist()
    cached = _cache_checked(spark, df, files, memory_max_mb=1)
    assert cached.storageLevel.useMemory and cached.storageLevel.useDisk
    cached.unpersist()
