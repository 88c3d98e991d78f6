"""Tables by logical name: folders from the config, writes and reads round trip through real Delta tables,
a partition replace touches only its partitions, rows made in the driver, decimals as doubles."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from pipelines.core.config import ConfigError
from pipelines.core.lake import Lake, decimals_as_double

DDL = "month string, subscriber_id string, arpu decimal(10,2), calls long"
ROWS = [
    ("2024-01", "s1", Decimal("10.50"), 3),
    ("2024-01", "s2", None, 0),
    ("2024-02", "s1", Decimal("-1.25"), None),
]


def test_table_folders_come_from_the_config(spark, make_cfg, tmp_path: Path):
    lake = Lake(spark, make_cfg("lake.tables.warning_list=lists/warning"))
    assert lake.path("warning_list") == f"{tmp_path}/lake/lists/warning"
    assert lake.path("features_monthly") == f"{tmp_path}/lake/{lake.cfg.lake.tables['features_monthly']}"
    with pytest.raises(ConfigError, match=r"lake\.tables: no table named 'nonsense'"):
        lake.path("nonsense")
    assert not lake.exists("warning_list") and lake.read_or_none("warning_list") is None
    assert lake.version("warning_list") is None
    lake.write(spark.createDataFrame(ROWS, DDL), "warning_list")
    assert (tmp_path / "lake" / "lists" / "warning" / "_delta_log").is_dir()
    assert lake.exists("warning_list") and lake.version("warning_list") == 0


def test_a_write_reads_back_the_same_rows_by_spark_arrow_and_as_dicts(spark, lake: Lake):
    df = spark.createDataFrame(ROWS, DDL)
    lake.write(df, "features_monthly", partition_by=["month"])
    assertDataFrameEqual(lake.read("features_monthly"), df)
    assert lake.partition_values("features_monthly", "month") == {("2024-01",), ("2024-02",)}
    arrow = lake.read_arrow(
        "features_monthly", columns=["subscriber_id", "calls"], partitions={"month": ["2024-01"]}
    )
    assert sorted(arrow.to_pylist(), key=lambda r: r["subscriber_id"]) == [
        {"subscriber_id": "s1", "calls": 3},
        {"subscriber_id": "s2", "calls": 0},
    ]
    rows = lake.read_rows("features_monthly", columns=["subscriber_id", "month"])
    assert sorted((r["month"], r["subscriber_id"]) for r in rows) == sorted((r[0], r[1]) for r in ROWS)


def test_replace_touches_only_its_partitions_and_keeps_old_versions(spark, lake: Lake):
    lake.write(spark.createDataFrame(ROWS, DDL), "features_monthly", partition_by=["month"])
    new = [("2024-01", "s9", Decimal("1.00"), 1)]
    lake.replace(spark.createDataFrame(new, DDL), "features_monthly", {"month": ["2024-01"]})
    assertDataFrameEqual(lake.read("features_monthly"), spark.createDataFrame([*new, ROWS[2]], DDL))
    assertDataFrameEqual(lake.read("features_monthly", version=0), spark.createDataFrame(ROWS, DDL))
    assert lake.versions(["features_monthly", "warning_list"]) == {
        "features_monthly": 1,
        "warning_list": None,
    }
    # a rerun of the same replace gives the same rows
    lake.replace(spark.createDataFrame(new, DDL), "features_monthly", {"month": ["2024-01"]})
    assert lake.read("features_monthly").where(F.col("month") == "2024-01").count() == 1


def test_rows_made_in_the_driver_are_written_and_replaced_by_partition(spark, lake: Lake):
    ddl = "month string, source string, metric string, value double"
    first = [("2024-01", "test", "auc", 0.7), ("2024-01", "realised", "auc", 0.6)]
    both = {"month": ["2024-01"], "source": ["test", "realised"]}
    lake.replace_rows(first, ddl, "model_performance", both)
    realised = {"month": ["2024-01"], "source": ["realised"]}
    lake.replace_rows([("2024-01", "realised", "auc", 0.65)], ddl, "model_performance", realised)
    lake.write_rows([("2024-02", "test", "auc", 0.8)], ddl, "model_performance")  # an append
    got = sorted(
        tuple(r)
        for r in lake.read("model_performance").select("month", "source", "metric", "value").collect()
    )
    assert got == [
        ("2024-01", "realised", "auc", 0.65),
        ("2024-01", "test", "auc", 0.7),
        ("2024-02", "test", "auc", 0.8),
    ]


def test_decimals_as_double_casts_decimals_only(spark):
    df = spark.createDataFrame(ROWS, DDL)
    out = decimals_as_double(df)
    assert [(f.name, f.dataType.simpleString()) for f in out.schema.fields] == [
        ("month", "string"),
        ("subscriber_id", "string"),
        ("arpu", "double"),
        ("calls", "bigint"),
    ]
    assert sorted((r.subscriber_id, r.month, r.arpu) for r in out.collect()) == [
        ("s1", "2024-01", 10.5),
        ("s1", "2024-02", -1.25),
        ("s2", "2024-01", None),
    ]
