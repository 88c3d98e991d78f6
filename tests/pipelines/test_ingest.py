"""Ingest on generated landing data with injected faults: real Spark, real Delta tables."""

from __future__ import annotations

import shutil

import pytest
from pyspark.sql import functions as F

from features.errors import MissingColumnsError
from pipelines.core.lake import Lake
from pipelines.ingest import (
    GateFailedError,
    IncompleteDeliveryError,
    UnreadableFileError,
    ingest_month,
)
from pipelines.sample_data.writer import read_faults, read_manifest


@pytest.fixture(scope="module")
def ingested(spark, landing, tmp_path_factory):
    from pipelines.core.config import load_config
    from tests.conftest import TEST_CONF

    lake_root = tmp_path_factory.mktemp("lake")
    cfg = load_config([TEST_CONF], [f"lake.root={lake_root}", f"landing.root={landing}"])
    reports = {m: ingest_month(spark, cfg, m) for m in ("2024-01", "2024-02", "2024-03")}
    return Lake(spark, cfg), reports


def _table(lake: Lake, name: str):
    return lake.read(name)


def test_counts_reconcile_and_every_fault_is_quarantined_with_its_reason(ingested, landing):
    lake, reports = ingested
    faults = read_faults(landing)
    manifest = read_manifest(landing)
    quarantine = _table(lake, "quarantine")
    for month in ("2024-02", "2024-03"):
        for source, report in reports[month].items():
            # the generator's own counts, computed independently of ingest: rows written, faults injected,
            # duplicates planted
            info = manifest["source_months"][f"{source}/{month}"]
            planted = info.get("duplicates_same_month", 0) + info.get("duplicates_from_previous", 0)
            assert (report.rows_read, report.rows_quarantined, report.duplicates) == (
                info["rows"],
                info["faults"],
                planted,
            ), (source, month)
            assert report.rows_loaded == info["rows"] - info["faults"] - planted
            expected = {
                (f["file"], f["row"], f["reason"])
                for f in faults
                if f["source"] == source and f["month"] == month
            }
            got = {
                (r.file, r.row_number, r.reason)
                for r in quarantine.where((F.col("source") == source) & (F.col("month") == month)).collect()
            }
            assert got == expected, (source, month, sorted(got ^ expected)[:5])
            assert len(expected) == info["faults"]


def test_quarantine_keeps_raw_values(ingested):
    lake, _ = ingested
    row = _table(lake, "quarantine").where(F.col("reason") == "invalid_value:event_type").first()
    assert '"event_type":"video"' in row.raw_values
    assert row.row_number >= 1


def test_late_cdrs_land_in_the_previous_month_without_duplicates(ingested, landing):
    lake, reports = ingested
    cdr = _table(lake, "cdr")
    late = cdr.where((F.col("event_month") == "2024-02") & (F.col("delivery_month") == "2024-03"))
    # the generator held back this many of February's records for March's delivery
    planted = read_manifest(landing)["source_months"]["cdr/2024-03"]["late_in"]
    assert late.count() == reports["2024-03"]["cdr"].late_records == planted > 0
    assert late.agg(F.min("event_ts")).first()[0].day >= 22
    assert cdr.groupBy("record_id").count().where("count > 1").count() == 0


def test_rerun_and_redelivery_leave_identical_tables(ingested, spark, landing):
    lake, _ = ingested
    tables = ("subscriptions", "cdr", "billing", "care", "quarantine")
    before = {t: sorted(tuple(map(repr, r)) for r in lake.read(t).collect()) for t in tables}
    ingest_month(spark, lake.cfg, "2024-03")
    after = {t: sorted(tuple(map(repr, r)) for r in lake.read(t).collect()) for t in tables}
    for t in tables:
        assert before[t] == after[t], t


def test_missing_success_marker_is_refused(spark, make_cfg, landing, tmp_path):
    copy = tmp_path / "landing"
    shutil.copytree(landing / "billing" / "month=2024-01", copy / "billing" / "month=2024-01")
    (copy / "billing" / "month=2024-01" / "_SUCCESS").unlink()
    cfg = make_cfg(f"landing.root={copy}")
    with pytest.raises(IncompleteDeliveryError, match="no _SUCCESS marker"):
        ingest_month(spark, cfg, "2024-01", sources=["billing"])
    assert not Lake(spark, cfg).exists("billing")
    reports = ingest_month(spark, cfg, "2024-01", sources=["billing"], allow_incomplete=True)
    assert reports["billing"].incomplete_delivery and Lake(spark, cfg).exists("billing")


def test_broken_files_fail_the_source_month_and_write_nothing(spark, make_cfg, landing):
    cfg = make_cfg(f"landing.root={landing}")
    with pytest.raises(MissingColumnsError, match=r"part-late-fix\.csv: missing columns paid_amount"):
        ingest_month(spark, cfg, "2024-07", sources=["billing"])
    with pytest.raises(UnreadableFileError, match=r"export\.xlsx: not a CSV"):
        ingest_month(spark, cfg, "2024-07", sources=["care"])
    lake = Lake(spark, cfg)
    assert not lake.exists("billing") and not lake.exists("care") and not lake.exists("quarantine")
    runs = lake.read("pipeline_runs").collect()
    assert {(r.stage, r.scope, r.status) for r in runs} == {
        ("ingest", "billing", "failed"),
        ("ingest", "care", "failed"),
    }


def test_failed_gate_fails_with_a_clear_message_and_writes_no_data(spark, make_cfg, landing):
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.max_quarantine_rate=0.0001")
    with pytest.raises(GateFailedError, match=r"billing 2024-02: data-quality gate failed.*quarantine rate"):
        ingest_month(spark, cfg, "2024-02", sources=["billing"])
    lake = Lake(spark, cfg)
    assert not lake.exists("billing")
    dq = lake.read("data_quality").first()
    assert dq.publishable is False and "quarantine rate" in dq.gate_failures
    ingest_month(spark, cfg, "2024-02", sources=["billing"], override_gates=True)
    dq = lake.read("data_quality").first()
    assert dq.gates_overridden and dq.publishable and lake.read("billing").count() == dq.rows_loaded


def test_data_quality_report(ingested):
    lake, reports = ingested
    dq = {(r.source, r.month): r for r in lake.read("data_quality").collect()}
    cdr = dq[("cdr", "2024-02")]
    assert cdr.rows_read == reports["2024-02"]["cdr"].rows_read
    assert cdr.publishable and cdr.distinct_subscribers > 2500
    assert '"part-000' in dq[("billing", "2024-02")].extra_columns
    assert '"2024-02-15"' in cdr.daily_counts


@pytest.mark.parametrize("max_repeated", [200_000, 0])  # broadcast, and the shuffle join beyond the limit
def test_duplicates_keep_the_last_delivered_copy(spark, monkeypatch, max_repeated):
    import pipelines.ingest as ingest

    monkeypatch.setattr(ingest, "MAX_REPEATED", max_repeated)
    rows = [  # key, file index (delivery order), block, position, value
        ("a", 0, 0, 5, "a-first"),
        ("a", 1, 0, 0, "a-later-file"),
        ("b", 0, 0, 1, "b-only"),
        ("c", 0, 0, 2, "c-1"),
        ("c", 0, 4096, 0, "c-later-block"),
        ("c", 0, 0, 9, "c-3"),
    ]
    good = spark.createDataFrame(rows, "record_id string, _fid int, _block long, _pos long, value string")
    kept = ingest._dedupe_repeated(good, ["record_id"])
    assert sorted((r.record_id, r.value) for r in kept.collect()) == [
        ("a", "a-later-file"),
        ("b", "b-only"),
        ("c", "c-later-block"),
    ]


def _deliver(root, source: str, month: str, rows: list[dict]) -> None:
    """Write one CSV delivery (every contract column; missing values empty) and its _SUCCESS marker."""
    import csv

    from features import contract as C

    folder = root / source / f"month={month}"
    folder.mkdir(parents=True)
    with open(folder / "part-0.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=C.columns(source))
        writer.writeheader()
        writer.writerows(rows)
    (folder / "_SUCCESS").touch()


def _line(month: str, sub: str, msisdn: str, activation: str, **extra: str) -> dict:
    from features.calendar import month_end

    return {
        "subscriber_id": sub,
        "msisdn": msisdn,
        "customer_id": "C" + sub,
        "segment": "consumer",
        "plan_type": "prepaid",
        "plan_id": "P1",
        "monthly_fee": "10.00",
        "activation_date": activation,
        "status": "active",
        "acquisition_channel": "store",
        "region": "north",
        "marketing_consent": "true",
        "snapshot_date": month_end(month).isoformat(),
        **extra,
    }


def test_an_event_is_owned_by_at_most_one_subscriber(spark, make_cfg, tmp_path):
    """Recycled and contested numbers, whatever the snapshots miss (issue: 533 record_ids loaded twice)."""
    landing = tmp_path / "landing"
    snapshots = {
        # S1's deactivation row (February) is broken: its hold ends with its last good snapshot (January)
        "2024-01": [_line("2024-01", "S1", "111", "2023-01-05"), _line("2024-01", "S3", "333", "2022-02-02")],
        "2024-02": [
            {**_line("2024-02", "S1", "111", "2023-01-05", status="deactivated"), "activation_date": ""},
            _line("2024-02", "S3", "333", "2022-02-02"),
            _line("2024-02", "S4", "444", "2021-06-01"),
        ],
        # S2 gets S1's old number; S3 vanishes; S5 also claims S4's number from 10 March
        "2024-03": [
            _line("2024-03", "S2", "111", "2024-03-01"),
            _line("2024-03", "S4", "444", "2021-06-01"),
            _line("2024-03", "S5", "444", "2024-03-10"),
        ],
    }
    for month, rows in snapshots.items():
        _deliver(landing, "subscriptions", month, rows)
    events = [  # record_id, msisdn, event_ts, expected owner (None: quarantined as unknown_msisdn)
        ("r1", "111", "2024-03-02 10:00:00", "S2"),
        ("r2", "333", "2024-03-05 10:00:00", None),
        ("r3", "444", "2024-03-09 23:59:59", "S4"),
        ("r4", "444", "2024-03-10 00:00:00", "S5"),
        ("r5", "444", "2024-03-20 08:00:00", "S5"),
    ]
    cdr = [
        {
            "record_id": r,
            "msisdn": m,
            "event_ts": ts,
            "event_type": "voice",
            "direction": "out",
            "duration_s": "60",
            "volume_kb": "0",
            "roaming": "false",
            "charge": "0",
        }
        for r, m, ts, _ in events
    ]
    _deliver(landing, "cdr", "2024-03", cdr)
    cfg = make_cfg(f"landing.root={landing}", "ingest.gates.enabled=false")
    for month in snapshots:
        ingest_month(spark, cfg, month, sources=["subscriptions"])
    report = ingest_month(spark, cfg, "2024-03", sources=["cdr"])["cdr"]
    lake = Lake(spark, cfg)
    loaded = {(r.record_id, r.subscriber_id) for r in lake.read("cdr").collect()}
    assert loaded == {(r, owner) for r, _, _, owner in events if owner}
    quarantined = lake.read("quarantine").where(F.col("source") == "cdr").collect()
    assert [(q.row_number, q.reason) for q in quarantined] == [(2, "unknown_msisdn")]
    assert report.msisdn_conflicts == 1
    dq = lake.read("data_quality").where(F.col("source") == "cdr").first()
    assert dq.msisdn_conflicts == 1
