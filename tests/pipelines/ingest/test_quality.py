"""The ``data_quality`` rows and the gates, against the landing counted independently of ingest."""

from __future__ import annotations

import json

import pytest
from pyspark.sql import functions as F

from pipelines.core.lake import Lake
from pipelines.ingest import GateFailedError, ingest_month
from pipelines.sample_data.writer import read_faults
from tests.pipelines.ingest.counts import DELIVERY_COLUMN, count_delivery


@pytest.mark.parametrize("month", ["2024-02", "2024-03"])
def test_data_quality_rows_hold_the_landing_counted_independently(ingested, truth, month):
    lake = ingested.lake
    rows = {r.source: r for r in lake.read("data_quality").where(F.col("month") == month).collect()}
    assert set(rows) == set(ingested.reports[month]) == {s for (s, m) in truth.counts if m == month}
    for source, dq in rows.items():
        count = truth.counts[(source, month)]
        faults = sum(count.faults.values())
        assert (dq.files, dq.rows_read, dq.rows_quarantined, dq.rows_loaded, dq.duplicates) == (
            count.files,
            count.records,
            faults,
            len(count.expected),
            count.records - faults - len(count.expected),
        ), source
        assert json.loads(dq.quarantine_by_reason) == dict(count.faults), source
        assert json.loads(dq.extra_columns) == count.extra_columns, source
        assert (dq.publishable, dq.incomplete_delivery, json.loads(dq.gate_failures)) == (True, False, [])
        # an approximate count (HyperLogLog): close to the exact one of the table read back
        silver = lake.read(source).where(F.col(DELIVERY_COLUMN.get(source, "month")) == month)
        exact = silver.select("subscriber_id").distinct().count()
        assert dq.distinct_subscribers == pytest.approx(exact, rel=0.05), source
    assert any(count.extra_columns for (_, m), count in truth.counts.items() if m == month)
    cdr = truth.counts[("cdr", month)]
    daily = cdr.daily_counts("event_ts")
    assert json.loads(rows["cdr"].daily_counts) == daily
    late = sum(n for day, n in daily.items() if not day.startswith(month))
    # the generator held back this many of the previous month's records for this delivery
    assert rows["cdr"].late_records == late == truth.manifest["source_months"][f"cdr/{month}"]["late_in"] > 0


def test_a_failed_gate_fails_with_a_clear_message_and_writes_no_data(spark, make_cfg, landing):
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.max_quarantine_rate=0.0001")
    with pytest.raises(GateFailedError, match=r"billing 2024-02: data-quality gate failed.*quarantine rate"):
        ingest_month(spark, cfg, "2024-02", sources=["billing"])
    lake = Lake(spark, cfg)
    assert not lake.exists("billing")
    dq = lake.read("data_quality").first()
    assert dq.publishable is False and "quarantine rate" in dq.gate_failures
    ingest_month(spark, cfg, "2024-02", sources=["billing"], override_gates=True)
    dq = lake.read("data_quality").first()
    count = count_delivery(landing, "billing", "2024-02", read_faults(landing))
    assert dq.gates_overridden and dq.publishable
    assert lake.read("billing").count() == dq.rows_loaded == len(count.expected)
