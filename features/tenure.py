"""Tenure, cohort, contract, plan and lifecycle features (pure DataFrame -> DataFrame).

Everything here reads the subscription snapshot **of month M only** (and M-1 for plan changes): later
snapshots overwrite status and deactivation fields, and reading them would leak the label.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import month_end, parse_month
from features.columns import ratio_avg_col

ACTIVE_STATUSES = ("active", "suspended")
SNAPSHOT_COLUMNS = (
    "subscriber_id",
    "customer_id",
    "household_id",
    "segment",
    "plan_type",
    "plan_id",
    "monthly_fee",
    "activation_date",
    "contract_end_date",
    "status",
    "acquisition_channel",
    "region",
    "handset_age_months",
    "marketing_consent",
)


def month_index(col: Column) -> Column:
    """Months since year 0 of a date column (calendar months, so differences are whole months)."""
    return F.year(col) * 12 + F.month(col) - 1


def _month_index(month: str) -> int:
    year, mon = parse_month(month)
    return year * 12 + mon - 1


def select_population(snapshot: DataFrame) -> DataFrame:
    """Subscribers active (or suspended) at the end of the snapshot month: the scoring population."""
    return snapshot.where(F.col("status").isin(*ACTIVE_STATUSES)).select(*SNAPSHOT_COLUMNS)


def cohort_column(tenure_months: Column, *, boundaries: Sequence[int], names: Sequence[str]) -> Column:
    """Cohort by tenure: ``names[i]`` for ``boundaries[i-1] <= tenure < boundaries[i]``."""
    expr = F.when(tenure_months < boundaries[0], F.lit(names[0]))
    for bound, name in zip(boundaries[1:], names[1:-1], strict=True):
        expr = expr.when(tenure_months < bound, F.lit(name))
    return expr.otherwise(F.lit(names[-1]))


def compute_tenure_features(
    population: DataFrame,
    previous_snapshot: DataFrame | None,
    *,
    month: str,
    boundaries: Sequence[int],
    names: Sequence[str],
) -> DataFrame:
    """One row per subscriber of ``population`` with tenure, cohort, contract, plan and household features.

    - ``tenure_months``: whole calendar months from the activation month to M (activated in M: 0).
    - ``cohort``: from ``tenure_months`` and the boundaries (lower bound inclusive).
    - ``months_to_contract_end``: calendar months from M to the contract end month (0: ends in M,
      negative: ended before); null without a contract date. ``out_of_contract``: no commitment left at
      the end of M (no contract date, or it ended on or before the last day of M).
    - ``plan_changed_m0`` / ``monthly_fee_change_m0``: against the M-1 snapshot; null when the subscriber
      was not in it (new lines), so "no change" and "no history" stay apart.
    - ``household_lines`` / ``customer_lines``: active lines sharing the household / account holder.
    """
    end = F.lit(month_end(month))
    m_index = _month_index(month)
    tenure = F.lit(m_index) - month_index(F.col("activation_date"))
    df = population.select(
        *SNAPSHOT_COLUMNS,
        tenure.alias("tenure_months"),
        (F.datediff(end, F.col("activation_date")) + 1).alias("tenure_days"),
        (month_index(F.col("contract_end_date")) - F.lit(m_index)).alias("months_to_contract_end"),
        F.col("contract_end_date").isNotNull().alias("has_contract"),
        (F.col("contract_end_date").isNull() | (F.col("contract_end_date") <= end)).alias("out_of_contract"),
        (F.col("status") == "suspended").alias("is_suspended"),
        (F.col("segment") == "business").alias("is_business"),
    ).withColumn("cohort", cohort_column(F.col("tenure_months"), boundaries=boundaries, names=names))
    households = (
        population.where(F.col("household_id").isNotNull())
        .groupBy("household_id")
        .agg(F.count("*").alias("household_lines"))
    )
    customers = population.groupBy("customer_id").agg(F.count("*").alias("customer_lines"))
    df = df.join(households, "household_id", "left").join(customers, "customer_id", "left")
    df = df.withColumn("household_lines", F.coalesce("household_lines", F.lit(1)))
    if previous_snapshot is None:
        return df.withColumn("plan_changed_m0", F.lit(None).cast("boolean")).withColumn(
            "monthly_fee_change_m0", F.lit(None).cast(df.schema["monthly_fee"].dataType)
        )
    prev = previous_snapshot.select(
        "subscriber_id", F.col("plan_id").alias("_prev_plan"), F.col("monthly_fee").alias("_prev_fee")
    )
    return (
        df.join(prev, "subscriber_id", "left")
        .withColumn("plan_changed_m0", F.col("plan_id") != F.col("_prev_plan"))
        .withColumn("monthly_fee_change_m0", F.col("monthly_fee") - F.col("_prev_fee"))
        .drop("_prev_plan", "_prev_fee")
    )


def with_lifecycle_stage(
    df: DataFrame,
    *,
    onboarding_months: int,
    growth_months: int,
    decline_contract_months: int,
    decline_inactive_days: int,
    trend_months: int,
) -> DataFrame:
    """Add ``lifecycle_stage``: onboarding, decline, growth or maturity (first match wins).

    onboarding: tenure below ``onboarding_months``. decline: the contract ends within
    ``decline_contract_months`` (0..N months ahead), or the longest run without outgoing activity in M
    reached ``decline_inactive_days`` while outgoing activity fell below its ``trend_months`` average. growth:
    tenure below ``growth_months``. maturity: the rest. Needs the tenure and usage features.
    """
    contract_ending = F.col("months_to_contract_end").between(0, decline_contract_months)
    inactive_falling = (F.col("max_inactive_run_days_m0") >= decline_inactive_days) & (
        F.col(ratio_avg_col("out_events", trend_months)) < 1
    )
    stage = (
        F.when(F.col("tenure_months") < onboarding_months, F.lit("onboarding"))
        .when(contract_ending | F.coalesce(inactive_falling, F.lit(False)), F.lit("decline"))
        .when(F.col("tenure_months") < growth_months, F.lit("growth"))
        .otherwise(F.lit("maturity"))
    )
    return df.withColumn("lifecycle_stage", stage)
