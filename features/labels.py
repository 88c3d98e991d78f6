"""Churn labels per the churn contract (pure).

Snapshot month M: the population is the subscribers active at the end of M (the feature rows). Gap
months M+1..M+g: the operator's time to act. Churn window M+g+1..M+g+w: a subscriber is a churner for
snapshot M when deactivated in the window for a counted reason. Labels read only the subscription
snapshots of the months after M (and, for the prepaid inactivity definition, the window's CDRs and
bills): nothing from M or earlier decides a label.

``label_status`` says why a row has its label:

| status | is_churn | meaning |
|---|---|---|
| ``pending`` | null | the window has not closed yet (``label_available`` false) |
| ``churn`` | true | deactivated in the window for a counted reason |
| ``prepaid_inactivity`` | true | prepaid, no outgoing activity nor top-up for N days in window (optional) |
| ``active`` | false | still on network at the end of the window |
| ``involuntary`` | false | deactivated in the window for an involuntary reason (non-payment: collections) |
| ``other_deactivation`` | false | deactivated in the window for a reason not counted |
| ``excluded`` | null | deactivated in the window for an excluded reason (fraud, deceased): not trained on |
| ``gap_churn`` | null | deactivated in the gap month (``gap_churn: count`` labels it by its reason instead) |
| ``unknown`` | null | missing from the window's snapshots without a deactivation record |
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months, month_end, month_start
from features.params import ChurnParams
from features.usage import longest_inactive_run

LABEL_COLUMNS = (
    "subscriber_id",
    "month",
    "window_start_month",
    "window_end_month",
    "label_available",
    "is_churn",
    "label_status",
    "churn_date",
    "churn_reason",
    "port_out_operator",
)


def label_window(month: str, *, gap_months: int, window_months: int) -> tuple[str, str]:
    """First and last month of the churn window of snapshot ``month``."""
    first = add_months(month, gap_months + 1)
    return first, add_months(first, window_months - 1)


def prepaid_inactive_subscribers(
    prepaid: DataFrame,
    cdr: DataFrame,
    billing: DataFrame,
    *,
    first_month: str,
    last_month: str,
    days: int,
) -> DataFrame:
    """Lines of ``prepaid`` with no top-up and a run of ``days`` days without outgoing CDRs in the window.

    Only the window's CDRs (``event_ts`` in it) and bills (``bill_month`` in it) are read; a subscriber with
    neither is inactive for the whole window. The label matures at the end of ``last_month``: CDRs delivered
    after it (``delivery_month``, when present: the last days' late records) are not read, so a rebuild
    after later deliveries gives the same label.
    """
    if "delivery_month" in cdr.columns:
        cdr = cdr.where(F.col("delivery_month") <= last_month)
    start, end = month_start(first_month), month_end(last_month)
    length = (end - start).days + 1
    day = F.to_date("event_ts")
    out_days = (
        cdr.where((F.col("direction") == "out") & day.between(F.lit(start), F.lit(end)))
        .groupBy("subscriber_id")
        .agg(F.collect_set(F.datediff(day, F.lit(start)) + 1).alias("_days"))
    )
    topups = (
        billing.where(F.col("bill_month").between(first_month, last_month))
        .groupBy("subscriber_id")
        .agg(F.sum("topup_count").alias("_topups"))
    )
    both = (
        prepaid.select("subscriber_id")
        .join(out_days, "subscriber_id", "left")
        .join(topups, "subscriber_id", "left")
    )
    run = longest_inactive_run(F.coalesce("_days", F.array().cast("array<int>")), F.lit(1), length)
    return both.where((F.coalesce("_topups", F.lit(0)) == 0) & (run >= days)).select("subscriber_id")


def _by_reason(
    reason: Column, counted: Sequence[str], involuntary: Sequence[str], excluded: Sequence[str]
) -> tuple[Column, Column]:
    status = (
        F.when(reason.isin(*counted), F.lit("churn"))
        .when(reason.isin(*excluded), F.lit("excluded"))
        .when(reason.isin(*involuntary), F.lit("involuntary"))
        .otherwise(F.lit("other_deactivation"))
    )
    is_churn = F.when(reason.isin(*counted), F.lit(True)).when(~reason.isin(*excluded), F.lit(False))
    return status, is_churn


def compute_labels(
    population: DataFrame,
    later_snapshots: DataFrame,
    *,
    month: str,
    rules: ChurnParams,
    available: bool,
    prepaid_inactive: DataFrame | None = None,
) -> DataFrame:
    """Labels of snapshot ``month`` for ``population`` (``subscriber_id, plan_type``) under ``rules``.

    ``later_snapshots``: subscription snapshots of months M+1 up to the window's last month (with a
    ``month`` column). ``available``: the last window month's snapshot is loaded. ``prepaid_inactive``:
    subscribers meeting the prepaid inactivity definition in the window (optional).
    """
    first, last = label_window(month, gap_months=rules.gap_months, window_months=rules.window_months)
    window_start, window_end = month_start(first), month_end(last)
    base = population.select("subscriber_id", "plan_type").withColumns(
        {
            "month": F.lit(month),
            "window_start_month": F.lit(first),
            "window_end_month": F.lit(last),
            "label_available": F.lit(available),
        }
    )
    if not available:
        return base.select(
            *LABEL_COLUMNS[:5],
            F.lit(None).cast("boolean").alias("is_churn"),
            F.lit("pending").alias("label_status"),
            F.lit(None).cast("date").alias("churn_date"),
            F.lit(None).cast("string").alias("churn_reason"),
            F.lit(None).cast("string").alias("port_out_operator"),
        )
    later = later_snapshots.where((F.col("month") > month) & (F.col("month") <= last))
    deactivations = (
        later.where((F.col("status") == "deactivated") & F.col("deactivation_date").isNotNull())
        .groupBy("subscriber_id")
        .agg(
            F.min_by(
                F.struct("deactivation_date", "deactivation_reason", "port_out_operator"), "deactivation_date"
            ).alias("_d")
        )
        .select(
            "subscriber_id",
            F.col("_d.deactivation_date").alias("churn_date"),
            F.col("_d.deactivation_reason").alias("churn_reason"),
            F.col("_d.port_out_operator").alias("port_out_operator"),
        )
    )
    present = later.where(F.col("month") == last).select("subscriber_id", F.lit(True).alias("_present"))
    df = base.join(deactivations, "subscriber_id", "left").join(present, "subscriber_id", "left")
    if prepaid_inactive is not None:
        flagged = prepaid_inactive.select("subscriber_id", F.lit(True).alias("_inactive"))
        df = df.join(flagged, "subscriber_id", "left")
    else:
        df = df.withColumn("_inactive", F.lit(None).cast("boolean"))

    date, reason = F.col("churn_date"), F.coalesce(F.col("churn_reason"), F.lit("other"))
    reason_status, reason_churn = _by_reason(
        reason, rules.counted_reasons, rules.involuntary_reasons, rules.excluded_reasons
    )
    in_gap = date < F.lit(window_start)
    in_window = date.between(F.lit(window_start), F.lit(window_end))
    inactive = (F.col("plan_type") == "prepaid") & F.coalesce(F.col("_inactive"), F.lit(False))
    count_gap = rules.gap_churn == "count"
    status = (
        F.when(in_gap, reason_status if count_gap else F.lit("gap_churn"))
        .when(in_window, reason_status)
        .when(inactive & F.col("_present").isNotNull(), F.lit("prepaid_inactivity"))
        .when(F.col("_present").isNotNull(), F.lit("active"))
        .otherwise(F.lit("unknown"))
    )
    is_churn = (
        F.when(in_gap, reason_churn if count_gap else F.lit(None).cast("boolean"))
        .when(in_window, reason_churn)
        .when(inactive & F.col("_present").isNotNull(), F.lit(True))
        .when(F.col("_present").isNotNull(), F.lit(False))
    )
    no_deactivation = date.isNull() | (date > F.lit(window_end))
    return df.select(
        *LABEL_COLUMNS[:5],
        is_churn.alias("is_churn"),
        status.alias("label_status"),
        F.when(~no_deactivation, date).alias("churn_date"),
        F.when(~no_deactivation, F.col("churn_reason")).alias("churn_reason"),
        F.when(~no_deactivation, F.col("port_out_operator")).alias("port_out_operator"),
    )
