"""Duplicates within a delivery (the last delivered copy wins) and across deliveries (loaded once)."""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from pipelines.ingest.dedupe import dedupe_repeated, repeated_positions


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
