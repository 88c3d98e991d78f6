"""Each trigger's precision and lead time, once the labels of the warned days have matured.

A warned line is a hit when it is deactivated for a counted reason (``churn.counted_reasons``) within
``daily.horizon_days`` after its first warning of the trigger in the evaluated days; the lead time is the
days from that warning to the deactivation. The reference is the monthly list: the share of the lines at or
above ``score.at_risk_band`` of the score months used that left within the same horizon from the first
evaluated day that used their list. A trigger whose precision is not above it adds no lift over the
monthly list (``lift`` <= 1). Days whose horizon has not closed in the loaded snapshots are left out.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from features.calendar import month_end
from models.params import RISK_BANDS
from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.daily.history import monthly_month

log = logging.getLogger(__name__)

EVALUATION_SCHEMA = (
    "first_day string, last_day string, trigger string, value_tier string, lines long, hits long, "
    "precision double, median_lead_days double, reference_precision double, lift double, contacts long"
)


def departures(lake: Lake) -> tuple[DataFrame, dt.date]:
    """``subscriber_id, deactivation_date`` of counted churn, and the last day the snapshots cover."""
    subs = lake.read("subscriptions")
    latest = subs.agg(F.max("month")).first()[0]
    counted = list(lake.cfg.churn.counted_reasons)
    gone = (
        subs.where(F.col("deactivation_date").isNotNull() & F.col("deactivation_reason").isin(*counted))
        .groupBy("subscriber_id")
        .agg(F.min("deactivation_date").alias("deactivation_date"))
    )
    return gone, month_end(latest)


def trigger_precision(
    warnings: DataFrame, gone: DataFrame, reference: DataFrame, *, horizon_days: int
) -> DataFrame:
    """Per trigger and value tier (and ``all``): lines, hits, precision, median lead, the reference's
    precision and the lift (pure; ``warnings``: ``day, subscriber_id, triggers, value_tier, contact_allowed``;
    ``reference``: ``subscriber_id, value_tier, start`` of the monthly list's at-risk lines)."""
    first = (
        warnings.select(
            "subscriber_id",
            "value_tier",
            "contact_allowed",
            F.to_date("day").alias("day"),
            F.explode("triggers").alias("trigger"),
        )
        .groupBy("trigger", "subscriber_id")
        .agg(
            F.min("day").alias("day"),
            F.first("value_tier").alias("value_tier"),
            F.max("contact_allowed").alias("contacted"),
        )
        .join(gone, "subscriber_id", "left")
    )
    lead = F.datediff("deactivation_date", "day")
    hit = (lead >= 0) & (lead <= horizon_days)
    scored = first.withColumn("_hit", F.coalesce(hit, F.lit(False))).withColumn("_lead", F.when(hit, lead))
    ref_lead = F.datediff("deactivation_date", "start")
    ref = reference.join(gone, "subscriber_id", "left").withColumn(
        "_hit", F.coalesce((ref_lead >= 0) & (ref_lead <= horizon_days), F.lit(False))
    )
    tier = F.coalesce(F.col("value_tier"), F.lit("unknown"))
    by_tier = ref.groupBy(tier.alias("value_tier")).agg(
        F.avg(F.col("_hit").cast("double")).alias("reference_precision")
    )
    overall = ref.agg(F.avg(F.col("_hit").cast("double")).alias("reference_precision")).withColumn(
        "value_tier", F.lit("all")
    )
    refs = by_tier.unionByName(overall)
    rows = scored.withColumn("value_tier", tier).unionByName(scored.withColumn("value_tier", F.lit("all")))
    return (
        rows.groupBy("trigger", "value_tier")
        .agg(
            F.count("*").alias("lines"),
            F.count_if("_hit").alias("hits"),
            F.median("_lead").cast("double").alias("median_lead_days"),
            F.count_if("contacted").alias("contacts"),
        )
        .withColumn("precision", F.col("hits") / F.col("lines"))
        .join(refs, "value_tier", "left")
        .withColumn("lift", F.col("precision") / F.col("reference_precision"))
    )


def reference_lines(warning_list: DataFrame, starts: Mapping[str, str], at_risk: Sequence[str]) -> DataFrame:
    """``subscriber_id, value_tier, start``: the at-risk lines of the monthly lists in ``starts`` (score
    month -> the first evaluated day that used its list), each line once, from the first list that had it
    at risk, as a warned line counts from its first warning (pure). Measured from the first day of the
    range instead, a later month's list would have less than the horizon to be right in."""
    if not starts:
        return warning_list.sparkSession.createDataFrame(
            [], "subscriber_id string, value_tier string, start date"
        )
    start = F.create_map(*[v for m, d in starts.items() for v in (F.lit(m), F.lit(dt.date.fromisoformat(d)))])
    first = Window.partitionBy("subscriber_id").orderBy("start")
    return (
        warning_list.where(F.col("score_month").isin(*starts) & F.col("risk_band").isin(*at_risk))
        .select("subscriber_id", "value_tier", F.element_at(start, F.col("score_month")).alias("start"))
        .withColumn("_n", F.row_number().over(first))
        .where("_n = 1")
        .drop("_n")
    )


def evaluate_daily(spark: SparkSession, cfg: Config, days: Sequence[str]) -> list[dict]:
    """Measure the triggers of ``days`` (those whose horizon closed) and replace ``daily_evaluation``
    (``ValueError`` without a day)."""
    if not days:
        raise ValueError("daily evaluation: no day given")
    lake = Lake(spark, cfg)
    horizon = cfg.daily.horizon_days
    with recorded_run(lake, "daily_evaluation", max(days)[:7], scope=f"{min(days)}..{max(days)}") as run:
        gone, covered = departures(lake)
        mature = [d for d in days if dt.date.fromisoformat(d) + dt.timedelta(days=horizon) <= covered]
        if not mature:
            raise LookupError(
                f"daily evaluation: no day of {min(days)}..{max(days)} has matured (snapshots cover up to "
                f"{covered}, the horizon is {horizon} days)"
            )
        warnings = lake.read("daily_warnings").where(F.col("day").isin(mature))
        at_risk = list(RISK_BANDS[RISK_BANDS.index(cfg.score.at_risk_band) :])
        starts: dict[str, str] = {}
        looked_up: set[str] = set()  # the days of a month share their list: looked up once per month
        for day in sorted(mature):
            if day[:7] in looked_up:
                continue
            looked_up.add(day[:7])
            try:
                starts.setdefault(monthly_month(lake, dt.date.fromisoformat(day)), day)
            except LookupError:  # no list scored before that month: nothing warned it, nothing to compare
                continue
        reference = reference_lines(lake.read("warning_list"), starts, at_risk)
        table = trigger_precision(warnings, gone, reference, horizon_days=horizon)
        out = table.select(
            F.lit(min(mature)).alias("first_day"),
            F.lit(max(mature)).alias("last_day"),
            *[c.split(" ")[0] for c in EVALUATION_SCHEMA.split(", ")[2:]],
        )
        rows = [r.asDict() for r in out.orderBy("trigger", "value_tier").collect()]
        lake.replace_rows(
            [tuple(r[c.split(" ")[0]] for c in EVALUATION_SCHEMA.split(", ")) for r in rows],
            EVALUATION_SCHEMA,
            "daily_evaluation",
            {"first_day": [min(mature)]},
        )
        run.row_counts = {"rows": len(rows), "days": len(mature)}
    for r in rows:
        if r["value_tier"] == "all":
            log.info(
                "%-24s lines %5d  precision %.2f  lead %s d  reference %.2f  lift %.1f%s",
                r["trigger"],
                r["lines"],
                r["precision"],
                r["median_lead_days"],
                r["reference_precision"] or 0.0,
                r["lift"] or 0.0,
                "" if (r["lift"] or 0) > 1 else "  (no lift over the monthly list)",
            )
    return rows
