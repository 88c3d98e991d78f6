"""``ingest_month`` on generated landing data with injected faults: real Spark, real Delta tables.

Expectations come from the landing files counted with Python's csv and pyarrow and from the generator's
record of what it planted (``tests/pipelines/ingest/counts.py``), never from ingest's own counters.
"""

from __future__ import annotations

import gzip
import logging
import shutil
import socket

import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from features import contract as C
from pipelines.core import spark as session
from pipelines.ingest import list_delivery
from pipelines.ingest.stage import PATHS, cache_checked, ingest_month
from tests.pipelines.ingest.counts import DELIVERY_COLUMN
from tests.pipelines.ingest.deliveries import MONTH, cdr_rows, csv_delivery, ingest_cdr, loaded_rows


@pytest.mark.parametrize("month", ["2024-02", "2024-03"])
def test_each_delivery_loads_its_good_records_once_and_quarantines_exactly_its_faults(ingested, truth, month):
    lake = ingested.lake
    quarantine = lake.read("quarantine")
    delivered = {s for (s, m) in truth.counts if m == month}
    assert set(ingested.reports[month]) == delivered  # no delivered source passed over
    for source in sorted(delivered):
        count = truth.counts[(source, month)]
        # the counting agrees with the generator's own record of what it wrote
        info = truth.manifest["source_months"][f"{source}/{month}"]
        planted = info.get("duplicates_same_month", 0) + info.get("duplicates_from_previous", 0)
        left_out = count.records - sum(count.faults.values()) - len(count.expected)
        assert (count.records, sum(count.faults.values()), left_out) == (
            info["rows"],
            info["faults"],
            planted,
        ), source
        keys = list(C.KEYS[source])
        silver = lake.read(source).where(F.col(DELIVERY_COLUMN.get(source, "month")) == month)
        loaded = [tuple(str(v) for v in r) for r in silver.select(*keys).collect()]
        assert len(loaded) == len(set(loaded)), (source, "a key loaded twice")
        assert set(loaded) == set(count.expected), (source, sorted(set(loaded) ^ set(count.expected))[:5])
        expected = {
            (f["file"], f["row"], f["reason"])
            for f in truth.faults
            if (f["source"], f["month"]) == (source, month)
        }
        got = {
            (r.file, r.row_number, r.reason)
            for r in quarantine.where((F.col("source") == source) & (F.col("month") == month)).collect()
        }
        assert got == expected, (source, sorted(got ^ expected)[:5])


def test_rerun_and_redelivery_leave_identical_tables(ingested, spark):
    lake = ingested.lake
    tables = ("subscriptions", "cdr", "billing", "care", "quarantine")
    before = {t: sorted(tuple(map(repr, r)) for r in lake.read(t).collect()) for t in tables}
    ingest_month(spark, lake.cfg, "2024-03")
    after = {t: sorted(tuple(map(repr, r)) for r in lake.read(t).collect()) for t in tables}
    for t in tables:
        assert before[t] == after[t], t


def test_a_large_delivery_is_cached_on_disk_and_a_small_one_in_memory(spark, tmp_path):
    _, first = csv_delivery(tmp_path, "part-000.csv", cdr_rows(400))
    folder = first.parent
    with gzip.open(folder / "part-001.csv.gz", "wb") as out:
        out.write(first.read_bytes())
    shutil.copy(first, folder / "part-002.csv")
    files, _ = list_delivery(folder, "cdr", allow_incomplete=True)
    df = spark.range(10)
    cached = cache_checked(spark, df, files, memory_max_mb=0)
    assert cached.storageLevel == StorageLevel.DISK_ONLY
    cached.unpersist()
    cached = cache_checked(spark, df, files, memory_max_mb=1)
    assert cached.storageLevel.useMemory and cached.storageLevel.useDisk
    cached.unpersist()
    # the setting it changes while defining the cache is restored
    assert spark.conf.get("spark.sql.inMemoryColumnarStorage.compressed", "true") == "true"


def test_an_optional_source_delivered_without_files_has_no_rows_that_month(spark, make_cfg, tmp_path):
    from pipelines.core.lake import Lake
    from pipelines.ingest import UnreadableFileError
    from tests.pipelines.ingest.deliveries import MONTH, cdr_folder, subscriptions, write_csv

    landing = tmp_path / "landing"
    folder = landing / "campaign_outcomes" / f"month={MONTH}"
    folder.mkdir(parents=True)
    (folder / "_SUCCESS").touch()
    outcomes = [
        {"campaign_month": MONTH, "subscriber_id": f"S{i}", "offer_id": "O1", "channel": "sms",
         "contacted": "true", "accepted": "false", "contact_ts": "", "feedback_code": ""}
        for i in range(30)
    ]  # fmt: skip
    outcomes[0]["contacted"] = "maybe"  # a bad row: 1 in 30, under the gate's quarantine rate
    cfg = make_cfg(f"landing.root={landing}")  # the gates judge the empty month too
    lake = Lake(spark, cfg)
    # the first delivery ever holds nothing: the table exists, empty
    ingest_month(spark, cfg, MONTH, sources=["campaign_outcomes"])
    assert lake.read("campaign_outcomes").count() == 0
    write_csv(folder / "part-0.csv", outcomes, columns=list(C.columns("campaign_outcomes")))
    ingest_month(spark, cfg, MONTH, sources=["campaign_outcomes"])
    assert lake.read("campaign_outcomes").count() == 29

    def quarantined() -> list[int]:
        return [
            r.row_number
            for r in lake.read("quarantine").where(F.col("source") == "campaign_outcomes").collect()
        ]

    assert quarantined() == [1]
    # redelivered as nothing (no campaign after all): the month's rows and quarantine go
    (folder / "part-0.csv").unlink()
    report = ingest_month(spark, cfg, MONTH, sources=["campaign_outcomes"])["campaign_outcomes"]
    assert (report.files, report.rows_read, report.rows_loaded, report.rows_quarantined) == (0, 0, 0, 0)
    assert lake.read("campaign_outcomes").count() == 0 and quarantined() == []
    quality = lake.read("data_quality").where(F.col("source") == "campaign_outcomes").collect()
    assert [(q.month, q.rows_read, q.publishable, q.gate_failures) for q in quality] == [
        (MONTH, 0, True, "[]")
    ]
    # nothing counts only as a complete delivery, and not when a data file was left unread for its name
    (folder / "_SUCCESS").unlink()
    with pytest.raises(UnreadableFileError, match=r"no data files \(no _SUCCESS either"):
        ingest_month(spark, cfg, MONTH, sources=["campaign_outcomes"], allow_incomplete=True)
    (folder / "_SUCCESS").touch()
    (folder / "_part-0.csv").write_text("campaign_month\n")
    with pytest.raises(UnreadableFileError, match=r"no data files \(_part-0\.csv not read"):
        ingest_month(spark, cfg, MONTH, sources=["campaign_outcomes"])
    # a required source's folder without data files is refused, naming the folder
    subscriptions(landing)
    cdr_folder(landing)
    with pytest.raises(UnreadableFileError, match=r"cdr/month=2024-03: no data files \(a delivery of cdr"):
        ingest_month(spark, cfg, MONTH, sources=["cdr"])


@pytest.mark.parametrize("path", ["arrow", "spark"])
def test_on_a_cluster_either_path_first_checks_the_executors_see_the_landing_and_the_lake(
    spark, make_cfg, tmp_path, monkeypatch, caplog, path
):
    """Both paths' tasks read the landing files and write the lake's: the local session's executors taken
    for a cluster's (the one predicate replaced), each check runs and finds its folder seen."""
    landing, _ = csv_delivery(tmp_path, "part-000.csv", cdr_rows(48))
    monkeypatch.setattr(session, "on_cluster", lambda _: True)
    with caplog.at_level(logging.INFO, logger="pipelines.core.spark"):
        lake, report = ingest_cdr(spark, make_cfg, landing, f"ingest.path={path}")
    assert PATHS[("cdr", MONTH)] == path
    seen = {r.getMessage() for r in caplog.records if r.name == "pipelines.core.spark"}
    host = socket.gethostname()
    assert {
        f"executors on {host} see {lake.cfg.landing_root}",
        f"executors on {host} see {lake.cfg.lake_root}",
    } <= seen
    assert report.rows_loaded == len(loaded_rows(lake)) == 48
