"""CDR numbers resolved to the subscriber who held them at the event's time (real Spark, real Delta)."""

from __future__ import annotations

from pyspark.sql import functions as F

from pipelines.core.lake import Lake
from pipelines.ingest import ingest_month


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
