"""The per-source ingest rules and the data-quality gates, with literal inputs (no Spark)."""

import json

import pytest

from features import contract as C
from pipelines.core.config import GatesConf
from pipelines.ingest.spec import (
    INGEST_ORDER,
    SOURCE_SPECS,
    LoadStats,
    evaluate_gates,
    trailing_daily_mean,
)

APRIL = [f"2024-04-{d:02d}" for d in range(1, 31)]


def _stats(**kw) -> LoadStats:
    base = dict(rows_read=1000, rows_quarantined=0, rows_loaded=1000, distinct_subscribers=10)
    return LoadStats(**{**base, **kw})


def _gates(stats, source="billing", trailing=None, **conf):
    return evaluate_gates(
        stats,
        spec=SOURCE_SPECS[source],
        month="2024-04",
        gates=GatesConf(**conf),
        late_days=7,
        trailing_mean=trailing,
    )


def test_every_source_has_a_spec_and_an_ingest_position():
    assert set(SOURCE_SPECS) == set(C.SOURCES) == set(INGEST_ORDER)
    assert INGEST_ORDER.index("subscriptions") < INGEST_ORDER.index("cdr")
    assert [s for s, spec in SOURCE_SPECS.items() if spec.optional] == list(C.OPTIONAL_SOURCES)


def test_a_delivery_replaces_exactly_its_partitions():
    assert SOURCE_SPECS["cdr"].replaced_partitions("2024-01") == {
        "event_month": ["2023-12", "2024-01"],
        "delivery_month": ["2024-01"],
    }
    assert SOURCE_SPECS["billing"].replaced_partitions("2024-01") == {"bill_month": ["2024-01"]}
    assert SOURCE_SPECS["care"].replaced_partitions("2024-01") == {"month": ["2024-01"]}
    cdr_cols = SOURCE_SPECS["cdr"].silver_columns()
    assert cdr_cols[-3:] == ["subscriber_id", "event_month", "delivery_month"]
    assert SOURCE_SPECS["billing"].silver_columns() == list(C.columns("billing"))


def test_quarantine_rate_gate_is_strictly_above_the_limit():
    assert _gates(_stats(rows_quarantined=50)) == []  # 5.00% is allowed
    assert _gates(_stats(rows_quarantined=51)) == ["quarantine rate 5.10% above 5.00%"]
    assert _gates(_stats(rows_quarantined=51), max_quarantine_rate=0.06) == []
    assert _gates(_stats(rows_read=0, rows_quarantined=0, rows_loaded=0)) == []


def test_disabled_gates_never_fail():
    assert _gates(_stats(rows_quarantined=900), enabled=False) == []


def test_missing_cdr_days_fail_only_for_event_sources():
    daily = {d: 100 for d in APRIL if d not in ("2024-04-10", "2024-04-11")}
    assert _gates(_stats(daily_counts=daily), source="cdr") == ["no CDRs on 2 day(s): 2024-04-10, 2024-04-11"]
    assert _gates(_stats(daily_counts=daily), source="cdr", require_all_cdr_days=False) == []
    assert _gates(_stats(daily_counts={}), source="care") == []


def test_daily_volume_gate_skips_the_late_window():
    daily = {d: 100 for d in APRIL}
    daily["2024-04-05"] = 40  # 60% below the trailing mean of 100
    daily["2024-04-28"] = 10  # inside the last 7 days: completed by next month's late records
    failures = _gates(_stats(daily_counts=daily), source="cdr", trailing=100.0)
    assert failures == ["CDR volume on 1 day(s) outside 50% of the trailing daily mean 100: 2024-04-05"]
    assert _gates(_stats(daily_counts=daily), source="cdr", trailing=None) == []
    assert (
        _gates(_stats(daily_counts=daily), source="cdr", trailing=100.0, cdr_daily_volume_tolerance=0.7) == []
    )


def test_shared_numbers_fail_the_snapshot_gate():
    stats = _stats(shared_values=["491700000001"])
    assert _gates(stats, source="subscriptions") == ["msisdn held by several live subscribers: 491700000001"]
    assert _gates(stats, source="subscriptions", unique_subscription_snapshot=False) == []


def test_trailing_mean_counts_each_months_own_complete_days():
    march = {f"2024-03-{d:02d}": 200 for d in range(1, 32)}
    march["2024-02-28"] = 5  # a late record of February, delivered in March: not March's volume
    march["2024-03-31"] = 1  # within the last 7 days: incomplete, ignored
    feb = {f"2024-02-{d:02d}": 100 for d in range(1, 30)}
    got = trailing_daily_mean([("2024-03", json.dumps(march)), ("2024-02", json.dumps(feb))], late_days=7)
    assert got == pytest.approx((24 * 200 + 22 * 100) / (24 + 22))
    assert trailing_daily_mean([], late_days=7) is None
