"""The daily triggers as pure functions: inputs as frames, the day and the settings as parameters.

Each trigger returns ``subscriber_id, trigger, strength, evidence`` (one row per line it fires on), the
evidence a sentence an agent can read out. The inputs only hold what was known at the end of the day (the
caller cuts them, :mod:`pipelines.daily.history`):

- ``lines``: the live lines of the latest snapshot with ``customer_id``, ``household_id``,
  ``contract_end_date`` (a later contract-end change applied), ``baseline_events`` (outgoing events a
  month, the monthly features' trend-window mean), ``month_days`` (the days of that month, which turn the
  baseline into a daily rate) and ``active_share`` (share of days with outgoing activity, same window);
- ``usage``: ``subscriber_id, event_date, out_events`` per line and day with outgoing activity;
- ``care``: ``subscriber_id, contact_ts, category, resolved, delivered`` (``delivered``: the day whose
  folder first held the contact, null for a contact read from a monthly delivery), from
  :func:`care_since` on;
- ``requests``: ``subscriber_id, request_ts, request_type, port_out_operator, delivered`` (the day whose
  folder first held the request).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from pipelines.core.config import DailyConf

TRIGGER_SCHEMA = "subscriber_id string, trigger string, strength double, evidence string"


def window_start(day: dt.date, days: int) -> dt.date:
    """The first day of the ``days`` days ending at ``day`` (``day`` included)."""
    return day - dt.timedelta(days=days - 1)


def care_since(day: dt.date, params: DailyConf) -> dt.date:
    """The first day of care contacts the triggers read: the lookback window, and the opening day of a
    complaint exactly ``open_complaint.max_age_days`` old (the oldest :func:`open_complaint` keeps)."""
    return min(window_start(day, params.lookback_days), complaint_since(day, params))


def complaint_since(day: dt.date, params: DailyConf) -> dt.date:
    """The oldest opening day of a complaint :func:`open_complaint` keeps (``max_age_days`` old)."""
    return day - dt.timedelta(days=params.open_complaint.max_age_days)


def _per_day(baseline: Column, days: int) -> Column:
    """A monthly ``baseline`` over ``days`` days, at the real length of the baseline's month."""
    return baseline * F.lit(float(days)) / F.col("month_days")


def _fired(df: DataFrame, name: str, strength: float, evidence: Column) -> DataFrame:
    return df.select(
        "subscriber_id",
        F.lit(name).alias("trigger"),
        F.lit(float(strength)).alias("strength"),
        evidence.alias("evidence"),
    )


def _events_since(usage: DataFrame, first: dt.date, day: dt.date) -> DataFrame:
    window = (F.col("event_date") >= F.lit(first)) & (F.col("event_date") <= F.lit(day))
    return usage.where(window).groupBy("subscriber_id").agg(F.sum("out_events").alias("recent_events"))


def _new_on(ts: str, day: dt.date, late_days: int) -> Column:
    """First delivered in ``day``'s folder and dated within ``late_days`` before it (a late record fires on
    the day it arrives; one delivered on an earlier day already fired then)."""
    date = F.to_date(ts)
    return (
        (F.col("delivered") == F.lit(day))
        & (date >= F.lit(day - dt.timedelta(days=late_days)))
        & (date <= F.lit(day))
    )


def port_out(
    care: DataFrame, requests: DataFrame, *, day: dt.date, params: DailyConf, late_days: int
) -> DataFrame:
    """A port-out request first delivered on ``day`` (dated up to ``late_days`` before it): the CRM's
    request, or a care contact about it."""
    crm = requests.where(
        _new_on("request_ts", day, late_days) & (F.col("request_type") == "port_out_request")
    ).select(
        "subscriber_id",
        F.concat(
            F.lit("port-out request on "),
            F.to_date("request_ts").cast("string"),
            F.when(
                F.col("port_out_operator").isNotNull(), F.concat(F.lit(" to "), F.col("port_out_operator"))
            ).otherwise(F.lit("")),
        ).alias("_e"),
    )
    contact = care.where(
        _new_on("contact_ts", day, late_days) & (F.col("category") == "port_out_request")
    ).select(
        "subscriber_id",
        F.concat(F.lit("asked care about porting out on "), F.to_date("contact_ts").cast("string")).alias(
            "_e"
        ),
    )
    found = crm.unionByName(contact).groupBy("subscriber_id").agg(F.min("_e").alias("_e"))
    return _fired(found, "port_out", params.port_out.strength, F.col("_e"))


def silence(lines: DataFrame, usage: DataFrame, *, day: dt.date, params: DailyConf) -> DataFrame:
    """The last ``silence.days`` days (``day`` included) without outgoing activity, on a line active on at
    least ``silence.min_active_share`` of its days: silence is unusual for that line."""
    p = params.silence
    lookback = params.lookback_days
    first = window_start(day, lookback)
    last = (
        usage.where(
            (F.col("event_date") >= F.lit(first))
            & (F.col("event_date") <= F.lit(day))
            & (F.col("out_events") > 0)
        )
        .groupBy("subscriber_id")
        .agg(F.max("event_date").alias("last_active"))
    )
    silent = F.coalesce(F.datediff(F.lit(day), F.col("last_active")), F.lit(lookback))
    found = (
        lines.join(last, "subscriber_id", "left")
        .withColumn("_silent", silent)
        .where((F.col("_silent") >= p.days) & (F.col("active_share") >= p.min_active_share))
    )
    since = F.when(
        F.col("last_active").isNotNull(),
        F.concat(F.lit(" (last on "), F.col("last_active").cast("string"), F.lit(")")),
    ).otherwise(F.lit(f" (none in {lookback} days)"))
    evidence = F.concat(
        F.lit("no outgoing activity for "),
        F.col("_silent").cast("string"),
        F.lit(" days"),
        since,
        F.lit(", usually active on "),
        F.format_number(F.col("active_share") * 100, 0),
        F.lit("% of days"),
    )
    return _fired(found, "silence", p.strength, evidence)


def usage_drop(lines: DataFrame, usage: DataFrame, *, day: dt.date, params: DailyConf) -> DataFrame:
    """Outgoing events over the last ``usage_drop.days`` days below ``max_share`` of the line's baseline."""
    p = params.usage_drop
    recent = _events_since(usage, window_start(day, p.days), day)
    expected = _per_day(F.col("baseline_events"), p.days)
    events = F.coalesce(F.col("recent_events"), F.lit(0))
    found = lines.join(recent, "subscriber_id", "left").where(
        (F.col("baseline_events") >= p.min_baseline_events) & (events < expected * F.lit(p.max_share))
    )
    evidence = F.concat(
        events.cast("string"),
        F.lit(f" outgoing events in {p.days} days against "),
        F.format_number(expected, 1),
        F.lit(" usual ("),
        F.format_number(events / expected * 100, 0),
        F.lit("%)"),
    )
    return _fired(found, "usage_drop", p.strength, evidence)


def open_complaint(care: DataFrame, *, day: dt.date, params: DailyConf) -> DataFrame:
    """A complaint not resolved at first contact, with no resolved contact since, open ``days`` or more
    and at most ``max_age_days`` (older ones are left to the monthly list; ``care`` must reach back to
    :func:`complaint_since`, as :func:`care_since` does)."""
    p = params.open_complaint
    oldest = complaint_since(day, params)
    contacts = care.where(
        (F.to_date("contact_ts") >= F.lit(oldest)) & (F.to_date("contact_ts") <= F.lit(day))
    )
    complaints = contacts.where((F.col("category") == "complaint") & ~F.col("resolved")).select(
        "subscriber_id", F.col("contact_ts").alias("_opened")
    )
    resolved = contacts.where(F.col("resolved")).select(
        F.col("subscriber_id").alias("_s"), F.col("contact_ts").alias("_r")
    )
    still_open = complaints.join(
        resolved, (F.col("subscriber_id") == F.col("_s")) & (F.col("_r") > F.col("_opened")), "left_anti"
    )
    age = F.datediff(F.lit(day), F.to_date("_opened"))
    found = (
        still_open.groupBy("subscriber_id")
        .agg(F.min("_opened").alias("_opened"), F.count("*").alias("_n"))
        .where(age >= p.days)
    )
    evidence = F.concat(
        F.lit("complaint of "),
        F.to_date("_opened").cast("string"),
        F.lit(" unresolved for "),
        age.cast("string"),
        F.lit(" days"),
        F.when(F.col("_n") > 1, F.concat(F.lit(" ("), F.col("_n").cast("string"), F.lit(" open)"))).otherwise(
            F.lit("")
        ),
    )
    return _fired(found, "open_complaint", p.strength, evidence)


def contract_ending(lines: DataFrame, *, day: dt.date, days: int) -> Column:
    return F.col("contract_end_date").between(F.lit(day), F.lit(day + dt.timedelta(days=days)))


def contract_end(lines: DataFrame, usage: DataFrame, *, day: dt.date, params: DailyConf) -> DataFrame:
    """The contract ends within ``contract_end.days`` days and the last ``usage_days`` days' outgoing events
    are below ``max_share`` of the baseline."""
    p = params.contract_end
    recent = _events_since(usage, window_start(day, p.usage_days), day)
    expected = _per_day(F.col("baseline_events"), p.usage_days)
    events = F.coalesce(F.col("recent_events"), F.lit(0))
    found = lines.join(recent, "subscriber_id", "left").where(
        contract_ending(lines, day=day, days=p.days)
        & (F.col("baseline_events") > 0)
        & (events < expected * F.lit(p.max_share))
    )
    evidence = F.concat(
        F.lit("contract ends "),
        F.col("contract_end_date").cast("string"),
        F.lit(", outgoing events down to "),
        F.format_number(events / expected * 100, 0),
        F.lit(f"% of usual over {p.usage_days} days"),
    )
    return _fired(found, "contract_end", p.strength, evidence)


def household_contract_end(
    lines: DataFrame, fired: DataFrame, *, day: dt.date, params: DailyConf
) -> DataFrame:
    """A triggered line whose household holds another line with its contract ending within
    ``contract_end.days`` (the bundle is up for renewal while one of its lines shows a sign of leaving)."""
    ending = lines.where(
        F.col("household_id").isNotNull() & contract_ending(lines, day=day, days=params.contract_end.days)
    ).select(
        F.col("household_id").alias("_h"),
        F.col("subscriber_id").alias("_other"),
        F.col("contract_end_date").alias("_end"),
    )
    triggered = (
        fired.select("subscriber_id")
        .distinct()
        .join(lines.select("subscriber_id", "household_id"), "subscriber_id")
    )
    found = (
        triggered.join(
            ending, (F.col("household_id") == F.col("_h")) & (F.col("subscriber_id") != F.col("_other"))
        )
        .groupBy("subscriber_id")
        .agg(F.min(F.struct("_end", "_other")).alias("_first"))
    )
    evidence = F.concat(
        F.lit("household line "),
        F.col("_first._other"),
        F.lit(" contract ends "),
        F.col("_first._end").cast("string"),
    )
    return _fired(found, "household_contract_end", params.household_contract_end.strength, evidence)


def evaluate_triggers(
    lines: DataFrame,
    usage: DataFrame,
    care: DataFrame,
    requests: DataFrame,
    *,
    day: dt.date,
    params: DailyConf,
    late_days: int,
) -> DataFrame:
    """Every enabled line trigger's rows for ``day`` (``TRIGGER_SCHEMA``), for the live ``lines`` only (the
    household combination reads these: :func:`with_household`); ``late_days``: how old a record a day's
    folder may hold (``ingest.late_days``)."""
    parts = []
    if params.port_out.enabled:
        parts.append(port_out(care, requests, day=day, params=params, late_days=late_days))
    if params.silence.enabled:
        parts.append(silence(lines, usage, day=day, params=params))
    if params.usage_drop.enabled:
        parts.append(usage_drop(lines, usage, day=day, params=params))
    if params.open_complaint.enabled:
        parts.append(open_complaint(care, day=day, params=params))
    if params.contract_end.enabled:
        parts.append(contract_end(lines, usage, day=day, params=params))
    fired = parts[0] if parts else lines.sparkSession.createDataFrame([], TRIGGER_SCHEMA)
    for p in parts[1:]:
        fired = fired.unionByName(p)
    return fired.join(lines.select("subscriber_id"), "subscriber_id", "left_semi")


def with_household(lines: DataFrame, fired: DataFrame, *, day: dt.date, params: DailyConf) -> DataFrame:
    """``fired`` and, where enabled, the household combination of its lines."""
    if not params.household_contract_end.enabled:
        return fired
    return fired.unionByName(household_contract_end(lines, fired, day=day, params=params))


def roll_up(fired: DataFrame, lines: DataFrame) -> DataFrame:
    """One row per triggered line: its triggers (sorted), evidence, combined strength
    (``1 - prod(1 - strength)``), and how many lines of its customer and household fired that day."""
    per_line = fired.groupBy("subscriber_id").agg(
        F.sort_array(F.collect_list("trigger")).alias("triggers"),
        F.array_join(F.sort_array(F.collect_list(F.concat_ws(": ", "trigger", "evidence"))), "; ").alias(
            "evidence"
        ),
        (1 - F.exp(F.sum(F.log1p(-F.least(F.col("strength"), F.lit(1 - 1e-9)))))).alias("trigger_strength"),
    )
    with_ids = per_line.join(lines.select("subscriber_id", "customer_id", "household_id"), "subscriber_id")
    customers = with_ids.groupBy("customer_id").agg(
        F.count("*").cast("int").alias("customer_lines_triggered")
    )
    households = (
        with_ids.where(F.col("household_id").isNotNull())
        .groupBy("household_id")
        .agg(F.count("*").cast("int").alias("household_lines_triggered"))
    )
    return with_ids.join(customers, "customer_id", "left").join(households, "household_id", "left")
