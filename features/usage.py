"""Usage features from CDRs: volumes this month, activity, inactivity runs, night share and trends.

The CDRs are read once: :func:`compute_cdr_daily` pre-aggregates events to one row per subscriber and
day (the only pass over raw events), and :func:`summarize_cdr_months` folds the days into one wide row
per subscriber with conditional sums per month. Usage, roaming and lifecycle features are read off
that summary. No exact distinct counts over raw events.

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


def compute_cdr_daily(cdr: DataFrame, *, night_start_hour: int, night_end_hour: int) -> DataFrame:
    """One row per ``subscriber_id`` and ``day`` (with its ``month``) from CDR events: the one pass."""
    etype, out = F.col("event_type"), F.col("direction") == "out"
    voice, sms, data = etype == "voice", etype == "sms", etype == "data"
    operator = F.col("other_party_operator")
    competitor = operator.isNotNull() & ~operator.isin(*NON_COMPETITOR_OPERATORS)
    roaming = F.col("roaming")

    def n(cond: Column) -> Column:
        return F.count_if(cond)

    def total(cond: Column, value: Column) -> Column:
        return F.sum(F.when(cond, value).otherwise(0))

    return (
        cdr.withColumn("day", F.to_date("event_ts"))
        .groupBy("subscriber_id", "day")
        .agg(
            F.count("*").alias("events"),
            n(out).alias("out_events"),
            n(voice & out).alias("voice_out_calls"),
            n(voice & ~out).alias("voice_in_calls"),
            total(voice & out, F.col("duration_s")).alias("voice_out_s"),
            total(voice & ~out, F.col("duration_s")).alias("voice_in_s"),
            n(sms & out).alias("sms_out"),
            n(sms & ~out).alias("sms_in"),
            n(data).alias("data_sessions"),
            total(data, F.col("volume_kb")).alias("data_kb"),
            n(_is_night(F.hour("event_ts"), night_start_hour, night_end_hour)).alias("night_events"),
            n((voice | sms) & out & competitor).alias("competitor_out_events"),
            n(roaming).alias("roaming_events"),
            n(roaming & out).alias("roaming_out_events"),
            total(roaming & data, F.col("volume_kb")).alias("roaming_data_kb"),
        )
        .withColumn("month", F.date_format("day", "yyyy-MM"))
    )


# measures of the monthly summary derived from the daily columns: a unit change, or a day flag
_SCALED = {
    "voice_out_min": ("voice_out_s", 60.0),
    "voice_in_min": ("voice_in_s", 60.0),
    "data_mb": ("data_kb", 1024.0),
    "roaming_data_mb": ("roaming_data_kb", 1024.0),
}
_DAY_FLAGS = {"active_days": "events", "out_active_days": "out_events", "roaming_days": "roaming_events"}


def _daily_measure(name: str) -> Column:
    """A daily column expression for a measure of the monthly summary (only that one is built: every
    expression is a round trip to the JVM)."""
    if name in _SCALED:
        column, divisor = _SCALED[name]
        return F.col(column) / divisor
    if name in _DAY_FLAGS:
        return F.when(F.col(_DAY_FLAGS[name]) > 0, 1).otherwise(0)
    return F.col(name)


def summarize_cdr_months(daily: DataFrame, *, month: str, trend_months: int) -> DataFrame:
    """One row per subscriber: raw monthly sums ``<measure>__<k>`` for month M-k (k < trend_months).

    Also ``out_day_mask__0``: the days of M with outgoing activity as a bit mask.
    """
    months = [add_months(month, -k) for k in range(trend_months)]
    aggs = []
    for k, m in enumerate(months):
        in_month = F.col("month") == m
        for measure in TREND_MEASURES:
            aggs.append(F.sum(F.when(in_month, _daily_measure(measure))).alias(summary_col(measure, k)))
    in_m0 = F.col("month") == month
    for measure in CURRENT_MEASURES:
        aggs.append(F.sum(F.when(in_m0, _daily_measure(measure))).alias(summary_col(measure, 0)))
    # days of M with outgoing activity as a bit mask (bit d-1 = day d): a plain aggregate, no lists
    day_bit = F.expr("shiftleft(1L, dayofmonth(day) - 1)")
    active_bit = F.when(in_m0 & (F.col("out_events") > 0), day_bit)
    aggs.append(F.coalesce(F.bit_or(active_bit), F.lit(0).cast("long")).alias(OUT_DAY_MASK))
    return daily.where(F.col("month").isin(*months)).groupBy("subscriber_id").agg(*aggs)


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
