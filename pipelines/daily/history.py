"""What the triggers of a day read, cut to what was known at the end of that day.

A month before the day's month comes from the monthly silver tables once it is delivered (its delivery
supersedes its days: corrected, complete, and never counted twice), else from the daily tables; the day's
own month always from the daily tables delivered up to the day (a backfill must not read the month's
delivery, which holds records known only later, nor the earlier months' late records it carries); either
way only events dated up to the end of the day.
The monthly view of a line (snapshot, features, warning list) is the latest month before the day's month.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from features.calendar import add_months, days_in_month
from features.columns import avg_col
from pipelines.core.lake import Lake
from pipelines.daily.ingest import daily_table


def _months(first: dt.date, last: dt.date) -> list[str]:
    out, month = [], first.strftime("%Y-%m")
    while month <= last.strftime("%Y-%m"):
        out.append(month)
        month = add_months(month, 1)
    return out


def delivered_months(lake: Lake, table: str, column: str) -> set[str]:
    if not lake.exists(table):
        return set()
    return {m for (m,) in lake.partition_values(table, column) if m}


def _in_window(ts: Column, first: dt.date, day: dt.date) -> Column:
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return (ts >= F.lit(dt.datetime.combine(first, dt.time()))) & (ts < F.lit(end))


def _first_delivery(key: str) -> Column:
    """The first day whose folder held the record (a record dated in the window is delivered no earlier
    than its date, so the days read hold its first delivery)."""
    return F.to_date(F.min("day").over(Window.partitionBy(key)))


def _events(
    lake: Lake,
    *,
    monthly: str,
    delivery_column: str,
    source: str,
    ts: str,
    key: str,
    columns: list[str],
    first: dt.date,
    day: dt.date,
    delivered_day: bool = False,
) -> DataFrame | None:
    """Events of ``first .. day``: from the monthly table for delivered months before ``day``'s month, else
    the daily deliveries up to ``day`` (a record delivered on two days once); None when neither table
    exists. ``delivered_day`` adds ``delivered``, the first day whose folder held the record (null for the
    monthly table's)."""
    months = [m for m in _months(first, day) if m < day.strftime("%Y-%m")]
    delivered = sorted(set(months) & delivered_months(lake, monthly, delivery_column))
    event_month = F.date_format(ts, "yyyy-MM")
    parts = []
    extra = [F.lit(None).cast("date").alias("delivered")] if delivered_day else []
    if delivered:
        # late records of an earlier month travel in a later month's delivery: one of the day's month or
        # after was not known on the day (a live run read the earlier month before it landed)
        known = F.col(delivery_column) < day.strftime("%Y-%m")
        parts.append(
            lake.read(monthly)
            .where(_in_window(F.col(ts), first, day) & event_month.isin(delivered) & known)
            .select(*columns, *extra)
        )
    daily = daily_table(source)
    if lake.exists(daily):
        rows = lake.read(daily).where(
            (F.col("day") >= F.lit(first.isoformat()))
            & (F.col("day") <= F.lit(day.isoformat()))
            & _in_window(F.col(ts), first, day)
        )
        if delivered:
            rows = rows.where(~event_month.isin(delivered))
        if delivered_day:
            rows = rows.withColumn("delivered", _first_delivery(key))
        parts.append(rows.select(*columns, *(["delivered"] if delivered_day else [])).dropDuplicates([key]))
    if not parts:
        return None
    out = parts[0]
    for p in parts[1:]:
        out = out.unionByName(p)
    return out


def out_events_by_day(lake: Lake, first: dt.date, day: dt.date) -> DataFrame:
    """``subscriber_id, event_date, out_events``: outgoing events per line and day of ``first .. day``."""
    cdr = _events(
        lake,
        monthly="cdr",
        delivery_column="delivery_month",
        source="cdr",
        ts="event_ts",
        key="record_id",
        columns=["record_id", "subscriber_id", "event_ts", "direction"],
        first=first,
        day=day,
    )
    if cdr is None:
        return lake.spark.createDataFrame([], "subscriber_id string, event_date date, out_events long")
    return (
        cdr.where((F.col("direction") == "out") & F.col("subscriber_id").isNotNull())
        .groupBy("subscriber_id", F.to_date("event_ts").alias("event_date"))
        .agg(F.count("*").alias("out_events"))
    )


def care_contacts(lake: Lake, first: dt.date, day: dt.date) -> DataFrame:
    """``subscriber_id, contact_ts, category, resolved, delivered`` of ``first .. day`` (``delivered``: see
    :func:`_events`)."""
    columns = ["contact_id", "subscriber_id", "contact_ts", "category", "resolved"]
    care = _events(
        lake,
        monthly="care",
        delivery_column="month",
        source="care",
        ts="contact_ts",
        key="contact_id",
        columns=columns,
        first=first,
        day=day,
        delivered_day=True,
    )
    if care is None:
        return lake.spark.createDataFrame(
            [],
            "subscriber_id string, contact_ts timestamp, category string, resolved boolean, delivered date",
        )
    return care.drop("contact_id")


def status_requests(lake: Lake, day: dt.date) -> DataFrame:
    """Every port-out, plan and contract-end request delivered up to ``day`` and dated up to it, with
    ``delivered``, the first day whose folder held it."""
    table = daily_table("port_requests")
    if not lake.exists(table):
        return lake.spark.createDataFrame(
            [],
            "subscriber_id string, request_ts timestamp, request_type string, contract_end_date date, "
            "port_out_operator string, delivered date",
        )
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    return (
        lake.read(table)
        .where((F.col("day") <= F.lit(day.isoformat())) & (F.col("request_ts") < F.lit(end)))
        .withColumn("delivered", _first_delivery("request_id"))
        .dropDuplicates(["request_id"])
        .select(
            "subscriber_id",
            "request_ts",
            "request_type",
            "contract_end_date",
            "port_out_operator",
            "delivered",
        )
    )


def monthly_month(lake: Lake, day: dt.date) -> str:
    """The latest scored month before ``day``'s month: its list, features and snapshot, the monthly view."""
    last = add_months(day.strftime("%Y-%m"), -1)
    scored = [m for m in delivered_months(lake, "warning_list", "score_month") if m <= last]
    if not scored:
        raise LookupError(
            f"daily warnings {day}: no warning list scored up to {last} (run the monthly pipeline first)"
        )
    return max(scored)


def live_lines(lake: Lake, month: str, requests: DataFrame) -> DataFrame:
    """The live lines of ``month``'s snapshot with their ids, the contract end (a later contract-end change
    applied), the monthly usage baselines of the trend window, and ``month_days``, the days of ``month``
    (the one month length the baselines are read at, :func:`features.calendar.days_in_month`)."""
    n = lake.cfg.features.trend_months
    snapshot = (
        lake.read("subscriptions")
        .where((F.col("month") == month) & (F.col("status") != "deactivated"))
        .select("subscriber_id", "customer_id", "household_id", "contract_end_date")
        .dropDuplicates(["subscriber_id"])
    )
    changed = (
        requests.where(
            (F.col("request_type") == "contract_end_change") & F.col("contract_end_date").isNotNull()
        )
        .groupBy("subscriber_id")
        .agg(F.max_by("contract_end_date", "request_ts").alias("_changed"))
    )
    month_days = days_in_month(month)
    features = (
        lake.read("features_monthly")
        .where(F.col("month") == month)
        .select(
            "subscriber_id",
            F.col(avg_col("out_events", n)).cast("double").alias("baseline_events"),
            (F.col(avg_col("out_active_days", n)).cast("double") / F.lit(month_days)).alias("active_share"),
        )
    )
    return (
        snapshot.join(changed, "subscriber_id", "left")
        .withColumn("contract_end_date", F.coalesce("_changed", "contract_end_date"))
        .drop("_changed")
        .join(features, "subscriber_id", "left")
        .fillna({"baseline_events": 0.0, "active_share": 0.0})
        .withColumn("month_days", F.lit(month_days))
    )
