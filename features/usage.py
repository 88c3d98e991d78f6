"""Usage features from CDRs: volumes this month, activity, inactivity runs, night share and trends.

The CDRs are read once for them: :func:`summarize_cdr_events` folds the events into one wide row per
subscriber with conditional sums per month, active days as per-month bit masks of days. Usage, roaming
and lifecycle features are read off that summary. No exact distinct counts over raw events.

Missing history is explicit: a month before the subscriber's activation, or a month with no CDR data
in the lake, gives null (unknown), never 0; a month on network without events gives 0.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months, days_in_month, month_end, month_start
from features.columns import (
    OUT_DAY_MASK,
    ROAMING_COUNTRIES,
    avg_col,
    chg_col,
    month_col,
    ratio_avg_col,
    summary_col,
)

NON_COMPETITOR_OPERATORS = ("own", "fixed", "intl")

# Measures with a monthly history (``_m0``, ``_m1``, ``_avg_Nm``, ``_chg_1m``, ``_ratio_avg_Nm``).
TREND_MEASURES = (
    "voice_out_calls",
    "voice_out_min",
    "sms_out",
    "data_mb",
    "out_events",
    "out_active_days",
)
# Measures of month M only.
CURRENT_MEASURES = (
    "voice_in_calls",
    "voice_in_min",
    "sms_in",
    "data_sessions",
    "events",
    "active_days",
    "night_events",
    "competitor_out_events",
    "roaming_events",
    "roaming_out_events",
    "roaming_data_mb",
    "roaming_days",
)


def _is_night(hour: Column, start: int, end: int) -> Column:
    if start > end:
        return (hour >= start) | (hour < end)
    return (hour >= start) & (hour < end)


def _month_index(ts: Column, month: str, months: int) -> Column:
    """k for an event of month M-k (k < months), else null: timestamp comparisons, no date formatting."""

    def start(m: str) -> Column:
        return F.lit(dt.datetime.combine(month_start(m), dt.time()))

    index = F.when(ts >= start(add_months(month, 1)), F.lit(None))
    for k in range(months):
        index = index.when(ts >= start(add_months(month, -k)), F.lit(k))
    return index


def summarize_cdr_events(
    cdr: DataFrame, *, month: str, trend_months: int, night_start_hour: int, night_end_hour: int
) -> DataFrame:
    """One row per subscriber with events in the window, straight from CDR events: raw monthly sums
    ``<measure>__<k>`` for month M-k (k < trend_months), 0 for a month without events (whether a month
    is known is the families' call: activation and loaded months, see :func:`known_month`).

    Days with activity are bit masks per month (bit d-1 = day d) whose set bits are counted, so no
    subscriber-day grouping is shuffled: the map side folds a task's events into one row per subscriber.
    Each event's month index, day bit and event kinds are projected once, before the aggregates read
    them. Also ``out_day_mask__0``: the days of M with outgoing activity.
    """
    etype, ts = F.col("event_type"), F.col("event_ts")
    operator = F.col("other_party_operator")
    events = cdr.select(
        "subscriber_id",
        "duration_s",
        "volume_kb",
        F.col("roaming").alias("_roaming"),
        _month_index(ts, month, trend_months).alias("_k"),
        F.expr("shiftleft(1L, dayofmonth(event_ts) - 1)").alias("_day_bit"),
        (F.col("direction") == "out").alias("_out"),
        (etype == "voice").alias("_voice"),
        (etype == "sms").alias("_sms"),
        (etype == "data").alias("_data"),
        _is_night(F.hour(ts), night_start_hour, night_end_hour).alias("_night"),
        (operator.isNotNull() & ~operator.isin(*NON_COMPETITOR_OPERATORS)).alias("_competitor"),
    ).where(F.col("_k").isNotNull())
    out, voice, sms, data, roaming = (F.col(c) for c in ("_out", "_voice", "_sms", "_data", "_roaming"))
    counted = {
        "events": F.lit(True),
        "out_events": out,
        "voice_out_calls": voice & out,
        "voice_in_calls": voice & ~out,
        "sms_out": sms & out,
        "sms_in": sms & ~out,
        "data_sessions": data,
        "night_events": F.col("_night"),
        "competitor_out_events": (voice | sms) & out & F.col("_competitor"),
        "roaming_events": roaming,
        "roaming_out_events": roaming & out,
    }
    # measure: (events, value, divisor): the month's integer total in the reported unit
    totals = {
        "voice_out_min": (voice & out, F.col("duration_s"), 60.0),
        "voice_in_min": (voice & ~out, F.col("duration_s"), 60.0),
        "data_mb": (data, F.col("volume_kb"), 1024.0),
        "roaming_data_mb": (roaming & data, F.col("volume_kb"), 1024.0),
    }
    day_flags = {"active_days": F.lit(True), "out_active_days": out, "roaming_days": roaming}
    day_bit = F.col("_day_bit")

    def measure(name: str, k: int) -> Column:
        in_month = F.col("_k") == k
        if name in counted:
            return F.count_if(in_month & counted[name])
        if name in totals:
            cond, value, divisor = totals[name]
            return F.sum(F.when(in_month & cond, value).otherwise(0)) / divisor
        days = F.bit_or(F.when(in_month & day_flags[name], day_bit))
        return F.bit_count(F.coalesce(days, F.lit(0).cast("long"))).cast("long")

    aggs = [
        measure(name, k).alias(summary_col(name, k)) for k in range(trend_months) for name in TREND_MEASURES
    ]
    aggs += [measure(name, 0).alias(summary_col(name, 0)) for name in CURRENT_MEASURES]
    out_days = F.bit_or(F.when((F.col("_k") == 0) & out, day_bit))
    mask = F.coalesce(out_days, F.lit(0).cast("long")).alias(OUT_DAY_MASK)
    return events.groupBy("subscriber_id").agg(*aggs, mask)


def count_roaming_countries(cdr: DataFrame, *, month: str) -> DataFrame:
    """Distinct roaming countries per subscriber in M (``roaming_countries__0``), over roaming events only."""
    start = dt.datetime.combine(month_start(month), dt.time())
    roaming = F.col("roaming") & (F.col("event_ts") >= F.lit(start)) & F.col("roaming_country").isNotNull()
    return (
        cdr.where(roaming)
        .groupBy("subscriber_id")
        .agg(F.count_distinct("roaming_country").alias(ROAMING_COUNTRIES))
    )


def known_month(population_activation: Column, month: str, available_months: Sequence[str]) -> Column:
    """True when usage of ``month`` is known for the subscriber: on network then, and CDRs loaded."""
    if month not in available_months:
        return F.lit(False)
    return population_activation <= F.lit(month_end(month))


def longest_zero_run(mask: Column, first_day: Column, last_day: int) -> Column:
    """Longest run of days ``first_day..last_day`` whose bit (day d = bit d-1) is not set in ``mask``."""
    bits = F.reverse(F.lpad(F.bin(mask), last_day, "0"))  # character d-1 is day d
    span = F.substr(bits, first_day, F.lit(last_day) - first_day + 1)
    return F.array_max(F.transform(F.split(span, "1"), lambda run: F.length(run)))


def longest_inactive_run(days: Column, first_day: Column, last_day: int) -> Column:
    """Longest run of consecutive days in ``first_day..last_day`` not listed in ``days`` (day numbers)."""
    inside = F.array_sort(F.filter(days, lambda d: d >= first_day))
    bounds = F.concat(F.array(first_day - 1), inside, F.array(F.lit(last_day + 1)))
    n = F.size(bounds) - 1
    gaps = F.zip_with(F.slice(bounds, 2, n), F.slice(bounds, 1, n), lambda a, b: a - b - 1)
    return F.array_max(gaps)


def _safe_ratio(num: Column, den: Column) -> Column:
    return F.when(den > 0, num / den)


def compute_usage_features(
    population: DataFrame,
    summary: DataFrame,
    *,
    month: str,
    trend_months: int,
    available_months: Sequence[str],
) -> DataFrame:
    """Usage features for every subscriber of ``population`` (``subscriber_id, activation_date``).

    Per trend measure: ``_m0`` (month M), ``_m1`` (M-1), ``_avg_Nm`` (mean over the months of
    M-N+1..M that are known), ``_chg_1m`` (m0 - m1) and ``_ratio_avg_Nm`` (m0 / avg; null when the
    average is 0). Also this month's in/out volumes, active days, the longest run of days without
    outgoing activity (counted from the activation day for lines activated in M), night share, in/out
    call ratio and ``usage_history_months`` (known months in the window).
    """
    n = trend_months
    months = [add_months(month, -k) for k in range(n)]
    df = population.select("subscriber_id", "activation_date").join(summary, "subscriber_id", "left")
    known = [known_month(F.col("activation_date"), m, available_months) for m in months]
    if month not in available_months:
        raise ValueError(f"no CDR data for {month}: usage of the snapshot month is required")

    def value(name: str, k: int) -> Column:
        return F.when(known[k], F.coalesce(F.col(summary_col(name, k)), F.lit(0)))

    first_day = F.when(
        F.col("activation_date") >= F.lit(month_start(month)), F.dayofmonth("activation_date")
    ).otherwise(F.lit(1))
    last_day = days_in_month(month)
    out = [F.col("subscriber_id")]
    for measure in TREND_MEASURES:
        values = [value(measure, k) for k in range(n)]
        known_count = sum((F.when(c.isNotNull(), 1).otherwise(0) for c in values), F.lit(0))
        avg = sum((F.coalesce(c, F.lit(0)) for c in values), F.lit(0)) / F.when(known_count > 0, known_count)
        out += [
            values[0].alias(month_col(measure, 0)),
            values[1].alias(month_col(measure, 1)),
            avg.alias(avg_col(measure, n)),
            (values[0] - values[1]).alias(chg_col(measure)),
            _safe_ratio(values[0], avg).alias(ratio_avg_col(measure, n)),
        ]
    for measure in CURRENT_MEASURES:
        if not measure.startswith("roaming") and measure != "competitor_out_events":
            out.append(value(measure, 0).alias(month_col(measure, 0)))
    out += [
        (F.lit(last_day) - first_day + 1).alias("days_on_network_m0"),
        longest_zero_run(F.coalesce(OUT_DAY_MASK, F.lit(0).cast("long")), first_day, last_day).alias(
            "max_inactive_run_days_m0"
        ),
        _safe_ratio(value("night_events", 0), value("events", 0)).alias("night_usage_share_m0"),
        _safe_ratio(value("voice_in_calls", 0), value("voice_out_calls", 0)).alias("in_out_call_ratio_m0"),
        sum((F.when(k, 1).otherwise(0) for k in known), F.lit(0)).alias("usage_history_months"),
    ]
    return df.select(*out)
