"""Usage features on tiny literal CDRs with hand-computed values (M = 2024-03, 31 days)."""

from __future__ import annotations

import datetime as dt

import pytest

from features.build import select_cdr_window
from features.params import FeatureParams
from features.usage import compute_cdr_daily, compute_usage_features, summarize_cdr_months

CDR_SCHEMA = (
    "subscriber_id string, event_ts timestamp, event_type string, direction string, duration_s int, "
    "volume_kb bigint, other_party string, other_party_operator string, roaming boolean, "
    "roaming_country string, event_month string, delivery_month string"
)
T = dt.datetime


def _cdr(
    sub, ts, etype, direction, dur=0, kb=0, party=None, op=None, roaming=False, country=None, delivery=None
):
    month = ts.strftime("%Y-%m")
    return (sub, ts, etype, direction, dur, kb, party, op, roaming, country, month, delivery or month)


CDRS = [
    _cdr("A", T(2024, 3, 1, 8), "voice", "out", 120, party="x", op="OP_B"),
    _cdr("A", T(2024, 3, 1, 22), "sms", "out", party="y", op="own"),
    _cdr("A", T(2024, 3, 5, 10), "data", "out", 600, 2048),
    _cdr("A", T(2024, 3, 31, 23, 59, 59), "voice", "in", 60, party="y", op="own"),
    _cdr("A", T(2024, 2, 10, 12), "voice", "out", 300, party="y", op="own"),
    _cdr("A", T(2024, 1, 20, 6), "voice", "out", 60, party="y", op="own"),
    # after the end of M: never read
    _cdr("A", T(2024, 4, 1, 0), "voice", "out", 999, party="y", op="own"),
    # a late record of M delivered with M+1: not known when M is built
    _cdr("A", T(2024, 3, 20, 12), "voice", "out", 999, party="y", op="own", delivery="2024-04"),
    _cdr("B", T(2024, 3, 10, 9), "voice", "out", 60, party="z", op="own"),
    _cdr("B", T(2024, 3, 12, 9), "sms", "out", party="z", op="own"),
]
POPULATION = [("A", dt.date(2023, 1, 15)), ("B", dt.date(2024, 3, 10)), ("C", dt.date(2020, 5, 1))]


def _usage(spark, available=("2024-01", "2024-02", "2024-03")):
    params = FeatureParams()
    cdr = select_cdr_window(spark.createDataFrame(CDRS, CDR_SCHEMA), month="2024-03", params=params)
    daily = compute_cdr_daily(cdr, night_start_hour=22, night_end_hour=6)
    summary = summarize_cdr_months(daily, month="2024-03", trend_months=3)
    population = spark.createDataFrame(POPULATION, "subscriber_id string, activation_date date")
    out = compute_usage_features(
        population, summary, month="2024-03", trend_months=3, available_months=list(available)
    )
    return {r.subscriber_id: r.asDict() for r in out.collect()}


def test_month_volumes_activity_night_share_and_inactivity_run(spark):
    a = _usage(spark)["A"]
    expected = {
        "voice_out_calls_m0": 1,
        "voice_out_min_m0": 2.0,
        "sms_out_m0": 1,
        "data_mb_m0": 2.0,
        "out_events_m0": 3,
        "out_active_days_m0": 2,
        "voice_in_calls_m0": 1,
        "voice_in_min_m0": 1.0,
        "events_m0": 4,
        "active_days_m0": 3,
        # 22:00 and 23:59 are night; 06:00 (January) is not
        "night_events_m0": 2,
        "night_usage_share_m0": 0.5,
        "in_out_call_ratio_m0": 1.0,
        # outgoing on the 1st and 5th: days 6..31 without outgoing activity
        "max_inactive_run_days_m0": 26,
        "days_on_network_m0": 31,
        "usage_history_months": 3,
    }
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_trends_against_own_three_month_average(spark):
    a = _usage(spark)["A"]
    expected = {
        "voice_out_min_m1": 5.0,
        "voice_out_min_avg_3m": 8 / 3,
        "voice_out_min_chg_1m": -3.0,
        "voice_out_min_ratio_avg_3m": 0.75,
        "out_events_m1": 1,
        "out_events_avg_3m": 5 / 3,
        "out_events_ratio_avg_3m": 1.8,
        "voice_out_calls_ratio_avg_3m": 1.0,
    }
    assert {k: a[k] for k in expected} == pytest.approx(expected)


def test_new_subscriber_history_is_null_not_zero(spark):
    b = _usage(spark)["B"]
    assert b["voice_out_calls_m1"] is None and b["voice_out_calls_chg_1m"] is None
    assert b["voice_out_calls_avg_3m"] == 1.0 and b["voice_out_calls_ratio_avg_3m"] == 1.0
    assert b["usage_history_months"] == 1
    # on network from the 10th: 22 days; outgoing on the 10th and 12th, then nothing for 19 days
    assert (b["days_on_network_m0"], b["max_inactive_run_days_m0"]) == (22, 19)


def test_silent_subscriber_is_zero_with_undefined_ratios(spark):
    c = _usage(spark)["C"]
    assert (c["voice_out_calls_m0"], c["voice_out_calls_m1"], c["out_active_days_m0"]) == (0, 0, 0)
    assert c["voice_out_calls_ratio_avg_3m"] is None and c["night_usage_share_m0"] is None
    assert c["max_inactive_run_days_m0"] == 31


def test_month_without_cdr_data_is_unknown(spark):
    a = _usage(spark, available=("2024-02", "2024-03"))["A"]
    assert a["voice_out_min_avg_3m"] == pytest.approx(3.5)
    assert a["usage_history_months"] == 2


def test_roaming_countries_of_the_month(spark):
    from features.usage import count_roaming_countries

    rows = [
        _cdr("A", T(2024, 3, 2, 9), "data", "out", 60, 10, roaming=True, country="FR"),
        _cdr("A", T(2024, 3, 3, 9), "voice", "out", 60, roaming=True, country="FR"),
        _cdr("A", T(2024, 3, 31, 23), "sms", "in", roaming=True, country="ES"),
        # February's trip is not this month's
        _cdr("A", T(2024, 2, 27, 9), "voice", "out", 60, roaming=True, country="DE"),
        _cdr("B", T(2024, 3, 2, 9), "voice", "out", 60),
    ]
    cdr = select_cdr_window(spark.createDataFrame(rows, CDR_SCHEMA), month="2024-03", params=FeatureParams())
    got = {
        r.subscriber_id: r.roaming_countries__0
        for r in count_roaming_countries(cdr, month="2024-03").collect()
    }
    assert got == {"A": 2}
