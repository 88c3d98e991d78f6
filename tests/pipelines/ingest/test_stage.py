"""``ingest_month`` on generated landing data with injected faults: real Spark, real Delta tables.

Expectations come from the landing files counted with Python's csv and pyarrow and from the generator's
record of what it planted (``tests/pipelines/ingest/counts.py``), never from ingest's own counters.
"""

from __future__ import annotations

import gzip
import shutil

import pytest
from pyspark import StorageLevel
from pyspark.sql import functions as F

from features import contract as C
from pipelines.ingest import list_delivery
from pipelines.ingest.stage import cache_checked, ingest_month
from tests.pipelines.ingest.counts import DELIVERY_COLUMN
from tests.pipelines.ingest.deliveries import cdr_rows, csv_delivery


@pytest.mark.parametrize("month", ["2024-02", "2024-03"])
def test_each_delivery_loads_its_good_records_once_and_quarantines_exactly_its_faults(ingested, truth, month):
    lake = ingested.lake
    quarantine = lake.read("quarantine")
    for source in ingested.reports[month]:
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
