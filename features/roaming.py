"""Roaming features: events, days, countries, data abroad and billed roaming charges (pure).

Heavy roamers are valuable and sensitive to roaming prices; these columns let the model (and the
``roaming_cost`` reason family) see that profile. Events come from the CDR summary of
:mod:`features.usage`; charges from the bills.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months
from features.columns import ROAMING_COUNTRIES, avg_col, month_col, summary_col


def compute_roaming_features(
    population: DataFrame,
    summary: DataFrame,
    countries: DataFrame,
    billing: DataFrame,
    *,
    month: str,
    trend_months: int,
) -> DataFrame:
    """Per subscriber of ``population``: ``roaming_events_m0``, ``roaming_out_events_m0``,
    ``roaming_days_m0``, ``roaming_countries_m0`` (distinct countries, from ``countries``: see
    :func:`features.usage.count_roaming_countries`), ``roaming_data_mb_m0``,
    ``roaming_usage_share_m0`` (share of this month's events abroad; null without events),
    ``roaming_charge_m0`` (billed in M; null without a bill) and ``roaming_charge_avg_Nm`` (mean over
    the bills of M-N+1..M).
    """
    n = trend_months
    months = [add_months(month, -k) for k in range(n)]
    bills = (
        billing.where(F.col("bill_month").isin(*months))
        .groupBy("subscriber_id")
        .agg(
            F.sum(F.when(F.col("bill_month") == month, F.col("roaming_charge"))).alias("roaming_charge_m0"),
            F.avg("roaming_charge").alias(avg_col("roaming_charge", n)),
        )
    )
    counts = ["roaming_events", "roaming_out_events", "roaming_days", "roaming_data_mb"]
    events = F.col(summary_col("events", 0))
    df = (
        population.select("subscriber_id")
        .join(summary, "subscriber_id", "left")
        .join(countries, "subscriber_id", "left")
    )
    return df.select(
        "subscriber_id",
        *[F.coalesce(F.col(summary_col(c, 0)), F.lit(0)).alias(month_col(c, 0)) for c in counts],
        F.coalesce(ROAMING_COUNTRIES, F.lit(0)).alias(month_col("roaming_countries", 0)),
        F.when(events > 0, F.col(summary_col("roaming_events", 0)) / events).alias("roaming_usage_share_m0"),
    ).join(bills, "subscriber_id", "left")
