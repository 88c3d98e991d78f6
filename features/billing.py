"""Billing features: ARPU, bill shock, overdue payments, arrears and top-ups (pure).

ARPU is what the line brings in net of discounts: for postpaid ``recurring + usage + roaming -
discounts`` of the bill; for prepaid (no recurring fee, usage is drawn from the balance) the month's
``top-ups - discounts``. Bills of months after M are never read.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months
from features.columns import avg_col, window_col


def arpu_column(plan_type: Column) -> Column:
    postpaid = F.col("recurring_charge") + F.col("usage_charge") + F.col("roaming_charge")
    gross = F.when(plan_type == "prepaid", F.col("topup_amount")).otherwise(postpaid)
    return gross - F.col("discount_amount")


def compute_billing_features(
    population: DataFrame, billing: DataFrame, *, month: str, trend_months: int
) -> DataFrame:
    """Per subscriber of ``population`` (``subscriber_id, plan_type``), from the bills up to M:

    - this month (null without a bill for M): ``invoice_amount_m0``, ``arpu_m0``, ``discount_amount_m0``,
      ``overdue_days_m0``, ``balance_due_m0`` (arrears), ``payment_ratio_m0`` (paid / invoiced; null when
      nothing was invoiced), ``topup_count_m0``, ``topup_amount_m0``;
    - over M-N+1..M (mean of the bills present): ``arpu_avg_Nm``, ``topup_amount_avg_Nm``;
      ``overdue_months_Nm`` (bills with overdue days) and ``bill_months_Nm`` (bills present);
    - ``bill_shock_ratio_m0``: this invoice over the mean invoice of M-N..M-1; null without earlier
      bills or when they were all zero (prepaid), so "no shock" and "unknown" stay apart.
    """
    n = trend_months
    window = [add_months(month, -k) for k in range(n)]
    previous = [add_months(month, -k) for k in range(1, n + 1)]
    bills = billing.where(F.col("bill_month").isin(*set(window) | set(previous))).join(
        population.select("subscriber_id", "plan_type"), "subscriber_id"
    )
    in_m0 = F.col("bill_month") == month
    in_window = F.col("bill_month").isin(*window)
    in_previous = F.col("bill_month").isin(*previous)

    def m0(col: Column) -> Column:
        return F.max(F.when(in_m0, col))

    agg = (
        bills.withColumn("_arpu", arpu_column(F.col("plan_type")))
        .groupBy("subscriber_id")
        .agg(
            m0(F.col("invoice_amount")).alias("invoice_amount_m0"),
            m0(F.col("_arpu")).alias("arpu_m0"),
            m0(F.col("discount_amount")).alias("discount_amount_m0"),
            m0(F.col("overdue_days")).alias("overdue_days_m0"),
            m0(F.col("balance_due")).alias("balance_due_m0"),
            m0(F.when(F.col("invoice_amount") > 0, F.col("paid_amount") / F.col("invoice_amount"))).alias(
                "payment_ratio_m0"
            ),
            m0(F.col("topup_count")).alias("topup_count_m0"),
            m0(F.col("topup_amount")).alias("topup_amount_m0"),
            F.avg(F.when(in_window, F.col("_arpu"))).alias(avg_col("arpu", n)),
            F.avg(F.when(in_window, F.col("topup_amount"))).alias(avg_col("topup_amount", n)),
            F.count_if(in_window & (F.col("overdue_days") > 0)).alias(window_col("overdue_months", n)),
            F.count_if(in_window).alias(window_col("bill_months", n)),
            F.avg(F.when(in_previous, F.col("invoice_amount"))).alias("_prev_invoice"),
        )
    )
    agg = agg.withColumn(
        "bill_shock_ratio_m0",
        F.when(F.col("_prev_invoice") > 0, F.col("invoice_amount_m0") / F.col("_prev_invoice")),
    ).drop("_prev_invoice")
    df = population.select("subscriber_id").join(agg, "subscriber_id", "left")
    return df.fillna(0, subset=[window_col("overdue_months", n), window_col("bill_months", n)])
