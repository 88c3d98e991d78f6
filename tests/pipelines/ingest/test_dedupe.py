"""Duplicates within a delivery (the last delivered copy wins) and across deliveries (loaded once)."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest
from pyspark.sql import functions as F

from pipelines.ingest.dedupe import dedupe_repeated, repeated_positions, repeated_positions_arrow


@pytest.mark.parametrize("max_repeated", [200_000, 0])  # broadcast, and the shuffle join beyond the limit
def test_duplicates_keep_the_last_delivered_copy(spark, max_repeated):
    rows = [  # key, file index (delivery order), block, position, value
        ("a", 0, 0, 5, "a-first"),
        ("a", 1, 0, 0, "a-later-file"),
        ("b", 0, 0, 1, "b-only"),
        ("c", 0, 0, 2, "c-1"),
        ("c", 0, 4096, 0, "c-later-block"),
        ("c", 0, 0, 9, "c-3"),
    ]
    good = spark.createDataFrame(rows, "record_id string, _fid int, _block long, _pos long, value string")
    kept = dedupe_repeated(good, ["record_id"], max_repeated=max_repeated)
    assert sorted((r.record_id, r.value) for r in kept.collect()) == [
        ("a", "a-later-file"),
        ("b", "b-only"),
        ("c", "c-later-block"),
    ]
    # the Arrow path's form: the positions of the rows left out, the same rows
    dropped = repeated_positions(good, ["record_id"], max_repeated=max_repeated)
    assert sorted((r._fid, r._pos) for r in dropped.collect()) == [(0, 2), (0, 5), (0, 9)]
    twice = good.where(F.col("record_id") != "c")
    dropped = repeated_positions(twice, ["record_id"], max_repeated=max_repeated)
    assert [(r._fid, r._pos) for r in dropped.collect()] == [(0, 5)]


def test_the_driver_finds_the_same_repeated_keys_as_spark(spark):
    """The Arrow path's key pass in the driver (pyarrow) and by Spark's shuffle leave out the same rows:
    keys of two columns, some once, some twice, some many times, across files (one block per file)."""
    rng = random.Random(5)
    rows = []
    for fid in range(4):
        for pos in range(rng.randint(200, 400)):
            rows.append((f"s{rng.randint(0, 300)}", f"2024-0{rng.randint(1, 3)}", fid, 0, pos + 10**9 * fid))
    good = spark.createDataFrame(
        rows, "subscriber_id string, bill_month string, _fid int, _block long, _pos long"
    )
    keys = ["subscriber_id", "bill_month"]
    by_spark = sorted((r._fid, r._pos) for r in repeated_positions(good, keys).collect())
    table = pa.table({n: [r[i] for r in rows] for i, n in enumerate(good.columns)}).drop_columns(["_block"])
    table = table.cast(
        pa.schema([(n, pa.string()) for n in keys] + [("_fid", pa.int32()), ("_pos", pa.int64())])
    )
    by_driver = repeated_positions_arrow(table, keys)
    assert by_driver.schema.names == ["_fid", "_pos"]
    assert sorted(zip(*by_driver.to_pydict().values(), strict=True)) == by_spark
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[r[:2]] = counts.get(r[:2], 0) + 1
    assert len(by_spark) == sum(n - 1 for n in counts.values()) > 0
    assert max(counts.values()) > 2, "keys delivered more than twice are covered"
    # the last delivered copy stays: the highest file, then the highest record number in it
    last = {}
    for r in rows:
        last[r[:2]] = max(last.get(r[:2], (-1, -1)), (r[2], r[4]))
    assert not set(last.values()) & set(by_spark)
    none = repeated_positions_arrow(table.slice(0, 1), keys)
    assert none.num_rows == 0 and none.schema.names == ["_fid", "_pos"]


def test_late_cdrs_land_in_the_previous_month_without_duplicates(ingested, truth):
    cdr = ingested.lake.read("cdr")
    late = cdr.where((F.col("event_month") == "2024-02") & (F.col("delivery_month") == "2024-03"))
    # the generator held back this many of February's records for March's delivery
    planted = truth.manifest["source_months"]["cdr/2024-03"]["late_in"]
    assert late.count() == planted > 0
    # March's delivery repeats some of February's last week: those stay February's delivery's rows
    redelivered = truth.counts[("cdr", "2024-03")].good_keys & truth.counts[("cdr", "2024-02")].good_keys
    assert len(redelivered) == truth.manifest["source_months"]["cdr/2024-03"]["duplicates_from_previous"] > 0
    ids = [(r,) for (r,) in redelivered]
    owners = cdr.join(cdr.sparkSession.createDataFrame(ids, "record_id string"), "record_id")
    assert {r.delivery_month for r in owners.collect()} == {"2024-02"}
    assert owners.count() == len(ids)
    assert late.agg(F.min("event_ts")).first()[0].day >= 22
    assert cdr.groupBy("record_id").count().where("count > 1").count() == 0
