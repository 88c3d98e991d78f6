"""The Delta layer on real local Spark and real Delta tables in temp folders."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema
from pyspark.testing import assertDataFrameEqual

from features.errors import MissingColumnsError, SchemaMismatchError
from pipelines.core.delta import (
    count_rows,
    data_files,
    read_arrow,
    read_delta,
    table_history,
    table_version,
    vacuum,
    write_delta,
    write_files,
    write_rows,
)

SCHEMA = T.StructType(
    [
        T.StructField("subscriber_id", T.StringType()),
        T.StructField("month", T.StringType()),
        T.StructField("calls", T.IntegerType()),
        T.StructField("fee", T.DecimalType(10, 2)),
        T.StructField("event_ts", T.TimestampType()),
        T.StructField("day", T.DateType()),
        T.StructField("active", T.BooleanType()),
    ]
)


def rows(month: str, ids: list[str], calls: int = 1) -> list[tuple]:
    ts = dt.datetime(int(month[:4]), int(month[5:7]), 1, 12, 30, 0)
    return [(sid, month, calls + i, Decimal("9.99"), ts, ts.date(), i % 2 == 0) for i, sid in enumerate(ids)]


def test_write_append_overwrite_partitions(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    jan = spark.createDataFrame(rows("2024-01", ["a", "b"]), SCHEMA)
    feb = spark.createDataFrame(rows("2024-02", ["c"]), SCHEMA)
    r0 = write_delta(jan, path, mode="append", partition_by=["month"])
    assert (r0.version, r0.rows_added) == (0, 2)
    assertDataFrameEqual(read_delta(spark, path), jan)

    write_delta(feb, path, mode="append")
    assertDataFrameEqual(read_delta(spark, path), jan.unionByName(feb))

    # replace only January: February untouched, January's rows are exactly the new ones
    jan2 = spark.createDataFrame(rows("2024-01", ["x"], calls=7), SCHEMA)
    r2 = write_delta(jan2, path, mode="overwrite", replace_partitions={"month": ["2024-01"]})
    assert r2.version == 2
    assertDataFrameEqual(read_delta(spark, path), jan2.unionByName(feb))

    # rerun of the same partition overwrite is idempotent
    write_delta(jan2, path, mode="overwrite", replace_partitions={"month": ["2024-01"]})
    assertDataFrameEqual(read_delta(spark, path), jan2.unionByName(feb))

    # full overwrite
    write_delta(feb, path, mode="overwrite")
    assertDataFrameEqual(read_delta(spark, path), feb)
    assert table_version(path) == 4
    ops = [h["operation"] for h in table_history(path)]
    assert len(ops) == 5

    # time travel
    assertDataFrameEqual(read_delta(spark, path, version=0), jan)
    assertDataFrameEqual(read_delta(spark, path, version=2), jan2.unionByName(feb))


def test_partition_overwrite_rejects_rows_outside_partitions(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    write_delta(spark.createDataFrame(rows("2024-01", ["a"]), SCHEMA), path, partition_by=["month"])
    feb = spark.createDataFrame(rows("2024-02", ["c"]), SCHEMA)
    with pytest.raises(ValueError, match="outside the partitions being replaced"):
        write_delta(feb, path, mode="overwrite", replace_partitions={"month": ["2024-01"]})
    assert table_version(path) == 0
    assert not list((tmp_path / "t").glob("month=2024-02/*.parquet"))


def test_replacing_a_partition_with_no_rows_empties_it(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    both = spark.createDataFrame(rows("2024-01", ["a"]) + rows("2024-02", ["b"]), SCHEMA)
    write_delta(both, path, partition_by=["month"])
    write_delta(
        spark.createDataFrame([], SCHEMA), path, mode="overwrite", replace_partitions={"month": ["2024-01"]}
    )
    assert [r.subscriber_id for r in read_delta(spark, path).collect()] == ["b"]
    # rows made in the driver: none replace a partition alike
    write_rows(spark, [], SCHEMA, path, mode="overwrite", replace_partitions={"month": ["2024-02"]})
    assert read_delta(spark, path).count() == 0
    assert table_version(path) == 2


def test_other_engines_read_identically_with_partitions_and_stats(spark, tmp_path: Path):
    import polars as pl

    from pipelines.core.sql import duckdb_connect

    path = str(tmp_path / "t")
    df = spark.createDataFrame(rows("2024-01", ["a", "b"]) + rows("2024/02 x", ["c"], calls=5), SCHEMA)
    write_delta(df, path, partition_by=["month"])

    table = DeltaTable(path)
    got = table.to_pyarrow_table().sort_by("subscriber_id").to_pylist()
    assert [(r["subscriber_id"], r["month"], r["calls"]) for r in got] == [
        ("a", "2024-01", 1),
        ("b", "2024-01", 2),
        ("c", "2024/02 x", 5),
    ]
    assert got[0]["event_ts"] == dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC)
    assert got[0]["fee"] == Decimal("9.99")

    # per-file statistics in the log, readable by delta-rs
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    jan = [a for a in actions if a["partition.month"] == "2024-01"]
    assert sum(a["num_records"] for a in jan) == 2
    assert (min(a["min.calls"] for a in jan), max(a["max.calls"] for a in jan)) == (1, 2)
    assert min(a["min.subscriber_id"] for a in jan) == "a"
    assert max(a["max.subscriber_id"] for a in jan) == "b"
    assert sum(a["null_count.fee"] for a in jan) == 0
    feb = [a for a in actions if a["partition.month"] == "2024/02 x"]
    assert [(a["min.event_ts"], a["max.day"]) for a in feb] == [
        (dt.datetime(2024, 2, 1, 12, 30, tzinfo=dt.UTC), dt.date(2024, 2, 1))
    ]

    pol = pl.read_delta(path).sort("subscriber_id")
    assert pol["month"].to_list() == ["2024-01", "2024-01", "2024/02 x"]
    assert pol["calls"].to_list() == [1, 2, 5]

    con = duckdb_connect()
    out = con.execute(
        f"SELECT month, count(*), sum(calls) FROM delta_scan('{path}') GROUP BY month ORDER BY month"
    ).fetchall()
    assert out == [("2024-01", 2, 3), ("2024/02 x", 1, 5)]

    # and Spark through the layer agrees
    assertDataFrameEqual(read_delta(spark, path), df)


def test_rows_written_in_the_driver_equal_rows_written_by_spark(spark, tmp_path: Path):
    """write_rows (pyarrow in this process, no Spark job) and write_delta give the same table: values,
    types, partition folders and statistics; replacing, appending and merging a new column behave alike."""
    jan = rows("2024-01", ["a", "b"]) + rows("2024/02 x", ["c"], calls=5)
    jan[1] = ("b", "2024-01", None, None, None, None, None)  # nulls in every column but the keys
    by_spark, by_rows = str(tmp_path / "spark"), str(tmp_path / "rows")
    write_delta(spark.createDataFrame(jan, SCHEMA), by_spark, partition_by=["month"])
    result = write_rows(spark, jan, SCHEMA, by_rows, partition_by=["month"])
    assert (result.version, result.files_added, result.rows_added) == (0, 2, 3)
    assertDataFrameEqual(read_delta(spark, by_rows), read_delta(spark, by_spark))
    assert read_delta(spark, by_rows).schema == SCHEMA
    assert sorted(os.listdir(by_rows)) == sorted(os.listdir(by_spark))  # month=2024-01, month=2024%2F02 x

    def stats(path: str) -> dict[str, tuple]:  # per partition (Spark may write several files)
        actions = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()
        out = {}
        for month in {a["partition.month"] for a in actions}:
            part = [a for a in actions if a["partition.month"] == month]
            low = [a["min.calls"] for a in part if a["min.calls"] is not None]
            out[month] = (
                sum(a["num_records"] for a in part),
                min(low),
                max(a["max.calls"] for a in part if a["max.calls"] is not None),
                min(a["min.event_ts"] for a in part if a["min.event_ts"] is not None),
                sum(a["null_count.fee"] for a in part),
            )
        return out

    assert stats(by_rows) == stats(by_spark)
    assert stats(by_rows)["2024-01"] == (2, 1, 1, dt.datetime(2024, 1, 1, 12, 30, tzinfo=dt.UTC), 1)

    # replace one partition, keep the other; append; a new column merged into the table
    feb = rows("2024-01", ["x"], calls=7)
    write_rows(spark, feb, SCHEMA, by_rows, mode="overwrite", replace_partitions={"month": ["2024-01"]})
    write_rows(spark, rows("2024-03", ["y"]), SCHEMA, by_rows)
    with pytest.raises(ValueError, match="rows outside the partitions being replaced"):
        write_rows(spark, feb, SCHEMA, by_rows, mode="overwrite", replace_partitions={"month": ["2024-03"]})
    with pytest.raises(MissingColumnsError, match="fee"):
        write_rows(spark, [r[:3] for r in feb], T.StructType(SCHEMA.fields[:3]), by_rows)
    assert table_version(by_rows) == 2  # the failed writes committed nothing
    wider = T.StructType([*SCHEMA.fields, T.StructField("note", T.StringType())])
    write_rows(spark, [(*rows("2024-04", ["z"])[0], "new")], wider, by_rows, merge_schema=True)
    got = (
        read_delta(spark, by_rows).select("subscriber_id", "month", "calls", "note").orderBy("subscriber_id")
    )
    assert [tuple(r) for r in got.collect()] == [
        ("c", "2024/02 x", 5, None),
        ("x", "2024-01", 7, None),
        ("y", "2024-03", 1, None),
        ("z", "2024-04", 1, "new"),
    ]


def test_read_arrow_prunes_partitions_and_rounds_decimals_as_spark_does(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    fees = [Decimal("60.04"), Decimal("0.10"), None]
    df = spark.createDataFrame(
        [(*r[:3], fee, *r[4:]) for r, fee in zip(rows("2024-01", ["a", "b", "c"]), fees, strict=True)]
        + rows("2024-02", ["d"], calls=5),
        SCHEMA,
    )
    write_delta(df, path, partition_by=["month"])

    got = read_arrow(
        path, columns=["subscriber_id", "month", "calls", "fee"], partitions={"month": ["2024-01"]}
    )
    assert got.schema.field("fee").type == pa.float64()
    assert got.sort_by("subscriber_id").to_pylist() == [
        {"subscriber_id": "a", "month": "2024-01", "calls": 1, "fee": 60.04},  # not 60.040000000000006
        {"subscriber_id": "b", "month": "2024-01", "calls": 2, "fee": 0.1},
        {"subscriber_id": "c", "month": "2024-01", "calls": 3, "fee": None},
    ]
    spark_fees = [r.fee for r in read_delta(spark, path).where("month = '2024-01'").orderBy("subscriber_id")
                  .selectExpr("cast(fee as double) as fee").collect()]  # fmt: skip
    assert got.sort_by("subscriber_id")["fee"].to_pylist() == spark_fees
    assert read_arrow(path, partitions={"month": ["2024-03"]}).num_rows == 0
    # the files executor tasks read themselves: the month's, and only the live ones
    write_delta(
        df.where("month = '2024-02'"), path, mode="overwrite", replace_partitions={"month": ["2024-02"]}
    )
    files = data_files(path, {"month": ["2024-02"]})
    assert files and all(f.startswith("file://") and "/month=2024-02/" in f for f in files)
    assert sum(pq.read_metadata(f.removeprefix("file://")).num_rows for f in files) == 1
    assert data_files(path, {"month": ["2024-03"]}) == []
    assert read_arrow(path).num_rows == 4
    assert count_rows(path) == 4  # from the log's statistics: the replaced partition's old file not counted
    with pytest.raises(FileNotFoundError, match="no Delta table"):
        read_arrow(str(tmp_path / "missing"))


def test_schema_enforcement(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    write_delta(spark.createDataFrame(rows("2024-01", ["a"]), SCHEMA), path, partition_by=["month"])
    base = spark.createDataFrame(rows("2024-02", ["b"]), SCHEMA)

    with pytest.raises(MissingColumnsError, match="missing columns fee, active"):
        write_delta(base.drop("fee", "active"), path)
    with pytest.raises(SchemaMismatchError, match=r"calls \(table int, data string\)"):
        write_delta(base.withColumn("calls", F.col("calls").cast("string")), path)
    with pytest.raises(SchemaMismatchError, match="new columns extra"):
        write_delta(base.withColumn("extra", F.lit(1)), path)
    assert table_version(path) == 0

    # new columns when asked: old rows read back with null
    write_delta(base.withColumn("extra", F.lit(1)), path, merge_schema=True)
    got = {r.subscriber_id: r.extra for r in read_delta(spark, path).collect()}
    assert got == {"a": None, "b": 1}


def _boom(value: int) -> int:
    if value >= 3:
        raise RuntimeError("executor died halfway")
    return value


def test_failed_write_leaves_previous_version_and_vacuum_cleans(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    first = spark.createDataFrame(rows("2024-01", ["a", "b"]), SCHEMA)
    write_delta(first, path, partition_by=["month"])
    boom = F.udf(_boom, T.IntegerType())
    bad = spark.createDataFrame(rows("2024-01", ["c", "d", "e", "f"]), SCHEMA).repartition(2)
    bad = bad.withColumn("calls", boom("calls"))
    with pytest.raises(Exception, match="executor died halfway"):
        write_delta(bad, path, mode="overwrite", replace_partitions={"month": ["2024-01"]})
    assert table_version(path) == 0
    assertDataFrameEqual(read_delta(spark, path), first)

    # a killed job: leftovers in staging and an orphan data file, never committed
    orphan_dir = tmp_path / "t" / "_staging" / "deadbeef" / "month=2024-01"
    orphan_dir.mkdir(parents=True)
    (orphan_dir / "part-0.parquet").write_bytes(b"PAR1junk")
    orphan = tmp_path / "t" / "month=2024-01" / "part-orphan.parquet"
    orphan.write_bytes(b"PAR1junk")
    old = 1_000_000_000
    for leftover in (orphan, orphan_dir / "part-0.parquet", orphan_dir, orphan_dir.parent):
        os.utime(leftover, (old, old))
    assertDataFrameEqual(read_delta(spark, path), first)
    removed = vacuum(path, retention_hours=1)
    assert any("deadbeef" in r for r in removed)
    assert not orphan.exists()
    assert not (tmp_path / "t" / "_staging" / "deadbeef").exists()
    assertDataFrameEqual(read_delta(spark, path), first)


def test_before_commit_sees_the_staged_rows_and_can_stop_the_commit(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    first = spark.createDataFrame(rows("2024-01", ["a", "b"]), SCHEMA)
    write_delta(first, path, partition_by=["month"])
    second = spark.createDataFrame(rows("2024-01", ["c", "d", "e"]), SCHEMA)
    seen: list[object] = []

    def refuse(staged):
        seen.append(sorted(r.subscriber_id for r in staged.collect()))
        assert staged.schema["month"].dataType == T.StringType()  # partition values typed as the table's
        raise RuntimeError("gate failed")

    with pytest.raises(RuntimeError, match="gate failed"):
        write_delta(
            second, path, mode="overwrite", replace_partitions={"month": ["2024-01"]}, before_commit=refuse
        )
    assert seen == [["c", "d", "e"]]
    assert table_version(path) == 0
    assertDataFrameEqual(read_delta(spark, path), first)
    assert not any((tmp_path / "t" / "_staging").glob("*/*")), "staging left behind"
    write_delta(
        second,
        path,
        mode="overwrite",
        replace_partitions={"month": ["2024-01"]},
        before_commit=lambda staged: seen.append(staged.count()),
    )
    assert table_version(path) == 1 and seen[-1] == 3
    assertDataFrameEqual(read_delta(spark, path), second)


def test_commit_is_one_transaction_with_metadata(spark, tmp_path: Path):
    path = str(tmp_path / "t")
    df = spark.createDataFrame(rows("2024-01", ["a", "b"]) + rows("2024-02", ["c"]), SCHEMA).repartition(3)
    write_delta(df, path, partition_by=["month"], commit_metadata={"churnlake.run_id": "r1"})
    log_files = sorted((tmp_path / "t" / "_delta_log").glob("*.json"))
    assert len(log_files) == 1
    commit = [json.loads(line) for line in log_files[0].read_text().splitlines()]
    info = next(c["commitInfo"] for c in commit if "commitInfo" in c)
    assert info["churnlake.run_id"] == "r1"
    adds = [c["add"] for c in commit if "add" in c]
    assert sum(json.loads(a["stats"])["numRecords"] for a in adds) == 3


def test_read_missing_table_is_clear(spark, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no Delta table"):
        read_delta(spark, str(tmp_path / "nothing"))


def test_files_written_by_python_tasks_commit_like_rows_written_by_spark(spark, tmp_path: Path):
    """write_files: the caller writes the Parquet files (``col=value`` folders); the layer checks them,
    lets a gate read them back, and commits them in one transaction, or nothing."""
    path = str(tmp_path / "t")
    first = spark.createDataFrame(rows("2024-01", ["a", "b"]) + rows("2024-02", ["c"]), SCHEMA)
    write_delta(first, path, partition_by=["month"])
    data = pa.schema([f for f in to_arrow_schema(SCHEMA, timezone="UTC") if f.name != "month"])

    def stage_months(months: dict[str, list[str]]):
        def stage(folder: str) -> None:
            for month, ids in months.items():
                os.makedirs(f"{folder}/month={month}")
                part = [dict(zip(SCHEMA.fieldNames(), r, strict=True)) for r in rows(month, ids, calls=7)]
                table = pa.Table.from_pylist(part, to_arrow_schema(SCHEMA, timezone="UTC")).select(data.names)
                pq.write_table(table, f"{folder}/month={month}/part-0.parquet")

        return stage

    seen: list[list[str]] = []

    def refuse(staged):
        seen.append(sorted(f"{r.month}:{r.subscriber_id}" for r in staged.collect()))
        raise RuntimeError("gate failed")

    with pytest.raises(RuntimeError, match="gate failed"):
        write_files(spark, SCHEMA, path, stage_months({"2024-01": ["x", "y"]}), mode="overwrite",
                    replace_partitions={"month": ["2024-01"]}, before_commit=refuse)  # fmt: skip
    assert seen == [["2024-01:x", "2024-01:y"]]
    assert table_version(path) == 0
    assert not any((tmp_path / "t" / "_staging").glob("*/*")), "staging left behind"
    with pytest.raises(ValueError, match="outside the partitions"):
        write_files(spark, SCHEMA, path, stage_months({"2024-02": ["z"]}), mode="overwrite",
                    replace_partitions={"month": ["2024-01"]})  # fmt: skip
    assert table_version(path) == 0
    result = write_files(
        spark, SCHEMA, path, stage_months({"2024-01": ["x", "y"]}), mode="overwrite",
        replace_partitions={"month": ["2024-01"]}, before_commit=lambda staged: staged.count(),
    )  # fmt: skip
    assert (result.version, result.rows_added, result.checked) == (1, 2, 2)
    expected = spark.createDataFrame(rows("2024-01", ["x", "y"], calls=7) + rows("2024-02", ["c"]), SCHEMA)
    assertDataFrameEqual(read_delta(spark, path), expected)
    assert DeltaTable(path).to_pyarrow_table().num_rows == 3
