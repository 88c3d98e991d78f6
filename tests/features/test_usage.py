"""Usage features on tiny literal CDRs with hand-computed values (M = 2024-03, 31 days), whole frames.

Windows: 3 months is 2024-01..03; 4 months is 2023-12..2024-03.
"""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from features.build import select_cdr_window
from features.columns import ROAMING_COUNTRIES, avg_col, chg_col, month_col, ratio_avg_col
from features.params import FeatureParams
from features.usage import compute_usage_features, count_roaming_countries, summarize_cdr_events
from tests.features.frames import CDR_COLUMNS, frame

MONTH = "2024-03"
# as landed: the window selection reads the event and delivery months
CDR_SCHEMA = CDR_COLUMNS | {"event_month": "string", "delivery_month": "string"}
T = dt.datetime


def cdr(
    subscriber_id: str,
    ts: dt.datetime,
    event_type: str,
    direction: str,
    *,
    duration_s: int = 0,
    volume_kb: int = 0,
    other_party: str | None = None,
    operator: str | None = None,
    roaming_country: str | None = None,
    delivery_month: str | None = None,
) -> dict:
    month = ts.strftime("%Y-%m")
    return {
        "subscriber_id": subscriber_id,
        "event_ts": ts,
        "event_type": event_type,
        "direction": direction,
        "duration_s": duration_s,
        "volume_kb": volume_kb,
        "other_party": other_party,
        "other_party_operator": operator,
        "roaming": roaming_country is not None,
        "roaming_country": roaming_country,
        "event_month": month,
        "delivery_month": delivery_month or month,
    }


CDRS = [
    cdr("A", T(2024, 3, 1, 8), "voice", "out", duration_s=120, other_party="x", operator="OP_B"),
    cdr("A", T(2024, 3, 1, 22), "sms", "out", other_party="y", operator="own"),
    cdr("A", T(2024, 3, 5, 10), "data", "out", duration_s=600, volume_kb=2048),
    # the last second of M: in it, and at night
    cdr("A", T(2024, 3, 31, 23, 59, 59), "voice", "in", duration_s=60, other_party="y", operator="own"),
    cdr("A", T(2024, 2, 10, 12), "voice", "out", duration_s=300, other_party="y", operator="own"),
    # 06:00 is no longer night
    cdr("A", T(2024, 1, 20, 6), "voice", "out", duration_s=60, other_party="y", operator="own"),
    # the first second of the 4-month window: outside the 3-month one
    cdr("A", T(2023, 12, 1, 0, 0, 0), "voice", "out", duration_s=180, other_party="y", operator="own"),
    # the first second after M: never read
    cdr("A", T(2024, 4, 1, 0, 0, 0), "voice", "out", duration_s=999, other_party="y", operator="own"),
    # a late record of M delivered with M+1: not known when M is built
    cdr("A", T(2024, 3, 20, 12), "voice", "out", duration_s=999, other_party="y", delivery_month="2024-04"),
    cdr("B", T(2024, 3, 10, 9), "voice", "out", duration_s=60, other_party="z", operator="own"),
    cdr("B", T(2024, 3, 12, 9), "sms", "out", other_party="z", operator="own"),
]
# A long on network; B activated on the 10th of M; C silent all along
POPULATION = [("A", dt.date(2023, 1, 15)), ("B", dt.date(2024, 3, 10)), ("C", dt.date(2020, 5, 1))]
WINDOW_MONTHS = {3: ["2024-01", "2024-02", "2024-03"], 4: ["2023-12", "2024-01", "2024-02", "2024-03"]}

# measure -> type of its monthly value: counts are bigint, minutes and megabytes double
TREND = {
    "voice_out_calls": "bigint",
    "voice_out_min": "double",
    "sms_out": "bigint",
    "data_mb": "double",
    "out_events": "bigint",
    "out_active_days": "bigint",
}
CURRENT = {
    "voice_in_calls": "bigint",
    "voice_in_min": "double",
    "sms_in": "bigint",
    "data_sessions": "bigint",
    "events": "bigint",
    "active_days": "bigint",
    "night_events": "bigint",
}


def usage_schema(n: int) -> dict[str, str]:
    schema = {"subscriber_id": "string"}
    for measure, kind in TREND.items():
        schema |= {
            month_col(measure, 0): kind,
            month_col(measure, 1): kind,
            avg_col(measure, n): "double",
            chg_col(measure): kind,
            ratio_avg_col(measure, n): "double",
        }
    schema |= {month_col(measure, 0): kind for measure, kind in CURRENT.items()}
    return schema | {
        "days_on_network_m0": "int",
        "max_inactive_run_days_m0": "int",
        "night_usage_share_m0": "double",
        "in_out_call_ratio_m0": "double",
        "usage_history_months": "int",
    }


def usage_row(n: int, subscriber_id: str, trends: dict, current: dict, other: dict) -> dict:
    """``trends``: measure -> (m0, m1, avg, chg, ratio); ``current``: measure -> this month's value."""
    row: dict = {"subscriber_id": subscriber_id}
    for measure, (m0, m1, avg, chg, ratio) in trends.items():
        row |= {
            month_col(measure, 0): m0,
            month_col(measure, 1): m1,
            avg_col(measure, n): avg,
            chg_col(measure): chg,
            ratio_avg_col(measure, n): ratio,
        }
    return row | {month_col(measure, 0): value for measure, value in current.items()} | other


# A by month (Dec, Jan, Feb, Mar): calls 1 1 1 1; minutes 3 1 5 2; SMS 0 0 0 1; MB 0 0 0 2;
# outgoing events 1 1 1 3; days with outgoing events 1 1 1 2 (the 1st and the 5th of March)
A_TRENDS = {
    3: {
        "voice_out_calls": (1, 1, 1.0, 0, 1.0),
        "voice_out_min": (2.0, 5.0, 8 / 3, -3.0, 0.75),
        "sms_out": (1, 0, 1 / 3, 1, 3.0),
        "data_mb": (2.0, 0.0, 2 / 3, 2.0, 3.0),
        "out_events": (3, 1, 5 / 3, 2, 1.8),
        "out_active_days": (2, 1, 4 / 3, 1, 1.5),
    },
    4: {
        "voice_out_calls": (1, 1, 1.0, 0, 1.0),
        "voice_out_min": (2.0, 5.0, 2.75, -3.0, 2 / 2.75),
        "sms_out": (1, 0, 0.25, 1, 4.0),
        "data_mb": (2.0, 0.0, 0.5, 2.0, 4.0),
        "out_events": (3, 1, 1.5, 2, 2.0),
        "out_active_days": (2, 1, 1.25, 1, 1.6),
    },
}
A_CURRENT = {
    "voice_in_calls": 1,
    "voice_in_min": 1.0,
    "sms_in": 0,
    "data_sessions": 1,
    "events": 4,
    "active_days": 3,
    # 22:00 and 23:59:59
    "night_events": 2,
}
A_OTHER = {
    "days_on_network_m0": 31,
    # outgoing on the 1st and the 5th: days 6..31 without outgoing activity
    "max_inactive_run_days_m0": 26,
    "night_usage_share_m0": 0.5,
    "in_out_call_ratio_m0": 1.0,
}
# B: activated in M, so M-1 is unknown (null, not 0) and the average is March's alone
B_TRENDS = {
    "voice_out_calls": (1, None, 1.0, None, 1.0),
    "voice_out_min": (1.0, None, 1.0, None, 1.0),
    "sms_out": (1, None, 1.0, None, 1.0),
    # no data: an average of 0 gives no ratio
    "data_mb": (0.0, None, 0.0, None, None),
    "out_events": (2, None, 2.0, None, 1.0),
    "out_active_days": (2, None, 2.0, None, 1.0),
}
B_CURRENT = {
    "voice_in_calls": 0,
    "voice_in_min": 0.0,
    "sms_in": 0,
    "data_sessions": 0,
    "events": 2,
    "active_days": 2,
    "night_events": 0,
}
B_OTHER = {
    # on network from the 10th: 22 days; outgoing on the 10th and 12th, then nothing for 19 days
    "days_on_network_m0": 22,
    "max_inactive_run_days_m0": 19,
    "night_usage_share_m0": 0.0,
    "in_out_call_ratio_m0": 0.0,
    "usage_history_months": 1,
}
# C: on network all along without a single event: zeros, and every ratio undefined
C_TRENDS = {
    measure: (0.0, 0.0, 0.0, 0.0, None) if kind == "double" else (0, 0, 0.0, 0, None)
    for measure, kind in TREND.items()
}
C_CURRENT = {measure: 0.0 if kind == "double" else 0 for measure, kind in CURRENT.items()}
C_OTHER = {
    "days_on_network_m0": 31,
    "max_inactive_run_days_m0": 31,
    "night_usage_share_m0": None,
    "in_out_call_ratio_m0": None,
}


def _usage(spark, n: int, available: list[str]):
    params = FeatureParams(trend_months=n)
    window = select_cdr_window(frame(spark, CDR_SCHEMA, CDRS), month=MONTH, params=params)
    summary = summarize_cdr_events(window, month=MONTH, trend_months=n, night_start_hour=22, night_end_hour=6)
    population = spark.createDataFrame(POPULATION, "subscriber_id string, activation_date date")
    return compute_usage_features(
        population, summary, month=MONTH, trend_months=n, available_months=available
    )


@pytest.mark.parametrize("n", [3, 4])
def test_volumes_trends_activity_and_unknown_history(spark, n):
    got = _usage(spark, n, WINDOW_MONTHS[n])
    expected = [
        usage_row(n, "A", A_TRENDS[n], A_CURRENT, A_OTHER | {"usage_history_months": n}),
        usage_row(n, "B", B_TRENDS, B_CURRENT, B_OTHER),
        usage_row(n, "C", C_TRENDS, C_CURRENT, C_OTHER | {"usage_history_months": n}),
    ]
    assertDataFrameEqual(got, frame(spark, usage_schema(n), expected))


def test_month_without_cdr_data_is_unknown(spark):
    # January's CDRs are not loaded: the 3-month averages are over February and March only
    got = _usage(spark, 3, ["2024-02", "2024-03"])
    a_trends = {
        "voice_out_calls": (1, 1, 1.0, 0, 1.0),
        "voice_out_min": (2.0, 5.0, 3.5, -3.0, 2 / 3.5),
        "sms_out": (1, 0, 0.5, 1, 2.0),
        "data_mb": (2.0, 0.0, 1.0, 2.0, 2.0),
        "out_events": (3, 1, 2.0, 2, 1.5),
        "out_active_days": (2, 1, 1.5, 1, 2 / 1.5),
    }
    expected = [
        usage_row(3, "A", a_trends, A_CURRENT, A_OTHER | {"usage_history_months": 2}),
        usage_row(3, "B", B_TRENDS, B_CURRENT, B_OTHER),
        usage_row(3, "C", C_TRENDS, C_CURRENT, C_OTHER | {"usage_history_months": 2}),
    ]
    assertDataFrameEqual(got, frame(spark, usage_schema(3), expected))


def test_snapshot_month_without_cdr_data_is_an_error(spark):
    with pytest.raises(ValueError, match="no CDR data for 2024-03"):
        _usage(spark, 3, ["2024-01", "2024-02"])


def test_roaming_countries_of_the_month(spark):
    rows = [
        cdr("A", T(2024, 3, 2, 9), "data", "out", duration_s=60, volume_kb=10, roaming_country="FR"),
        cdr("A", T(2024, 3, 3, 9), "voice", "out", duration_s=60, roaming_country="FR"),
        # the last second of M
        cdr("A", T(2024, 3, 31, 23, 59, 59), "sms", "in", roaming_country="ES"),
        # February's trip is not this month's
        cdr("A", T(2024, 2, 29, 23, 59, 59), "voice", "out", duration_s=60, roaming_country="DE"),
        # B stayed home
        cdr("B", T(2024, 3, 2, 9), "voice", "out", duration_s=60),
    ]
    window = select_cdr_window(frame(spark, CDR_SCHEMA, rows), month=MONTH, params=FeatureParams())
    got = count_roaming_countries(window, month=MONTH)
    expected = frame(spark, {"subscriber_id": "string", ROAMING_COUNTRIES: "bigint"}, [
        {"subscriber_id": "A", ROAMING_COUNTRIES: 2}
    ])  # fmt: skip
    assertDataFrameEqual(got, expected)


def test_roaming_measures_of_the_summary(spark):
    """The roaming family reads these off the summary (its own tests start from a hand-built one)."""
    rows = [
        cdr("A", T(2024, 3, 2, 9), "data", "out", duration_s=60, volume_kb=1024, roaming_country="FR"),
        cdr("A", T(2024, 3, 2, 23), "voice", "in", duration_s=90, roaming_country="FR"),
        cdr("A", T(2024, 3, 31, 23, 59, 59), "data", "in", volume_kb=512, roaming_country="ES"),
        cdr("A", T(2024, 3, 20, 9), "data", "out", volume_kb=4096),
        # February's trip is not this month's
        cdr("A", T(2024, 2, 29, 23, 59, 59), "sms", "out", roaming_country="DE"),
        cdr("B", T(2024, 3, 2, 9), "voice", "out", duration_s=60),
    ]
    window = select_cdr_window(frame(spark, CDR_SCHEMA, rows), month=MONTH, params=FeatureParams())
    summary = summarize_cdr_events(window, month=MONTH, trend_months=3, night_start_hour=22, night_end_hour=6)
    names = ["roaming_events", "roaming_out_events", "roaming_days", "roaming_data_mb", "active_days"]
    got = summary.select("subscriber_id", *[f"{name}__0" for name in names])
    expected = frame(
        spark,
        {"subscriber_id": "string"}
        | {f"{name}__0": "double" if name.endswith("mb") else "bigint" for name in names},
        [
            {
                "subscriber_id": "A",
                "roaming_events__0": 3,
                "roaming_out_events__0": 1,
                "roaming_days__0": 2,
                "roaming_data_mb__0": 1.5,
                "active_days__0": 3,
            },
            {
                "subscriber_id": "B",
                "roaming_events__0": 0,
                "roaming_out_events__0": 0,
                "roaming_days__0": 0,
                "roaming_data_mb__0": 0.0,
                "active_days__0": 1,
            },
        ],
    )
    assertDataFrameEqual(got, expected)
