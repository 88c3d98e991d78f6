"""The subscriber-month feature frame: every family joined on ``subscriber_id`` (pure).

Point in time: the inputs are cut here, not only by the caller. Snapshots after M, bills after M, care
contacts after the end of M, CDRs dated after M **or delivered after M** (late records of M that only
arrive with M+1's delivery were not known when M was scored) are never read. Rebuilding M after later
months were loaded gives the same rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.billing import compute_billing_features
from features.calendar import add_months, month_start
from features.care import compute_care_features
from features.history import compute_history_lags, compute_plan_fit, with_history_features
from features.params import ChurnParams, CohortParams, FeatureParams
from features.roaming import compute_roaming_features
from features.social import churned_numbers, compute_contact_pairs, compute_social_features
from features.tenure import compute_tenure_features, select_population, with_lifecycle_stage
from features.usage import compute_usage_features, count_roaming_countries, summarize_cdr_events

KEY = ("subscriber_id", "month")
CDR_COLUMNS = (
    "subscriber_id",
    "event_ts",
    "event_type",
    "direction",
    "duration_s",
    "volume_kb",
    "other_party",
    "other_party_operator",
    "roaming",
    "roaming_country",
)


def cdr_window_months(month: str, params: FeatureParams) -> list[str]:
    return [add_months(month, -k) for k in range(params.cdr_months)]


def select_cdr_window(cdr: DataFrame, *, month: str, params: FeatureParams) -> DataFrame:
    """The CDR columns features need, of the window's event months, as known at the end of M."""
    months = cdr_window_months(month, params)
    next_start = dt.datetime.combine(month_start(add_months(month, 1)), dt.time())
    known = F.col("event_month").isin(*months) & (F.col("event_ts") < F.lit(next_start))
    if "delivery_month" in cdr.columns:
        known = known & (F.col("delivery_month") <= month)
    return cdr.where(known).select(*CDR_COLUMNS)


def summarize_cdr(cdr_window: DataFrame, *, month: str, params: FeatureParams) -> DataFrame:
    """The window's CDRs as one row per subscriber (see :func:`features.usage.summarize_cdr_events`)."""
    return summarize_cdr_events(
        cdr_window,
        month=month,
        trend_months=params.trend_months,
        night_start_hour=params.night_start_hour,
        night_end_hour=params.night_end_hour,
    )


def combine_families(families: Sequence[DataFrame], *, key: str) -> DataFrame:
    """The families side by side, one row per ``key``: each family holds one row per key.

    A union and one aggregation, not a chain of joins: a chain of sort-merge joins on the same key runs
    in one task with a sorter per join (ten memory consumers for six families, each holding at least a
    page of execution memory), which ran out of memory on tiny data. Here each family's rows are shuffled
    in its own tasks, and the combine holds one sorter. Every column comes from exactly one family.
    """
    tags = [f"_family{i}" for i in range(len(families))]
    packed = [
        f.select(key, F.struct(*[c for c in f.columns if c != key]).alias(tag))
        for f, tag in zip(families, tags, strict=True)
    ]
    union = packed[0]
    for frame in packed[1:]:
        union = union.unionByName(frame, allowMissingColumns=True)
    combined = union.repartition(key).groupBy(key).agg(*[F.first(t, ignorenulls=True).alias(t) for t in tags])
    return combined.select(key, *[f"{t}.*" for t in tags])


def build_feature_frame(
    *,
    month: str,
    snapshots: DataFrame,
    cdr_window: DataFrame,
    billing: DataFrame,
    care: DataFrame,
    available_cdr_months: Sequence[str],
    params: FeatureParams,
    cohorts: CohortParams,
    churn: ChurnParams,
    cdr_summary: DataFrame | None = None,
    history: DataFrame | None = None,
) -> DataFrame:
    """One row per subscriber active at the end of ``month``, key ``(subscriber_id, month)``.

    ``snapshots``: the subscription table (any months; only M, M-1 and the contagion window up to M are
    read). ``cohorts`` / ``churn``: the cohort split and the counted churn reasons (contagion).
    ``cdr_window``: from :func:`select_cdr_window`. ``billing`` / ``care``: the silver tables.
    ``available_cdr_months``: months whose CDRs are loaded (others count as unknown, not as zero usage).
    ``cdr_summary``: :func:`summarize_cdr` of the window, when the caller cached it. Three families read
    it, each a different column subset, so Spark would otherwise aggregate the CDRs three times.
    ``history``: ``features_monthly`` rows of earlier months (``features.history``; only M-1..M-K+1 are
    read); None: no earlier month is known (the long windows hold M only).
    """
    p = params
    n = p.trend_months
    snapshots = snapshots.where(F.col("month") <= month)
    population = select_population(snapshots.where(F.col("month") == month))
    previous = snapshots.where(F.col("month") == add_months(month, -1))
    billing = billing.where(F.col("bill_month") <= month)
    if "month" in care.columns:
        care = care.where(F.col("month") <= month)

    tenure = compute_tenure_features(
        population, previous, month=month, boundaries=cohorts.boundaries, names=cohorts.names
    )
    summary = cdr_summary if cdr_summary is not None else summarize_cdr(cdr_window, month=month, params=p)
    usage = compute_usage_features(
        population, summary, month=month, trend_months=n, available_months=available_cdr_months
    )
    pairs = compute_contact_pairs(cdr_window, month=month, contagion_months=p.contagion_months)
    churned = churned_numbers(
        snapshots, month=month, contagion_months=p.contagion_months, counted_reasons=churn.counted_reasons
    )
    social = compute_social_features(
        population,
        pairs,
        churned,
        summary,
        month=month,
        min_calls=p.frequent_contact_min_calls,
        available_months=available_cdr_months,
    )
    countries = count_roaming_countries(cdr_window, month=month)
    roaming = compute_roaming_features(population, summary, countries, billing, month=month, trend_months=n)
    bills = compute_billing_features(population, billing, month=month, trend_months=n)
    contacts = compute_care_features(
        population,
        care,
        month=month,
        trend_months=n,
        recency_lookback_months=p.recency_lookback_months,
        category_windows=p.care_category_windows,
    )
    if history is not None:
        history = history.where(F.col("month") < month)
    lags = compute_history_lags(population, history, month=month, windows=p.history_windows)
    fit = compute_plan_fit(population, usage)
    families = [tenure, usage, social, roaming, bills, contacts, lags, fit]
    df = combine_families(families, key="subscriber_id")
    df = with_history_features(df, windows=p.history_windows, baseline_windows=p.baseline_windows)
    df = with_lifecycle_stage(
        df,
        onboarding_months=p.lifecycle_onboarding_months,
        growth_months=p.lifecycle_growth_months,
        decline_contract_months=p.lifecycle_decline_contract_months,
        decline_inactive_days=p.lifecycle_decline_inactive_days,
        trend_months=n,
    )
    first = ["subscriber_id", "month", "cohort", "lifecycle_stage", "hard_warning"]
    return df.withColumn("month", F.lit(month)).select(*first, *[c for c in df.columns if c not in first])
