"""Stage: build ``features_monthly`` for a month and the churn labels that can be known by then.

Reads the silver tables, checks the month was ingested and published, builds the feature frame
(``features.build``), replaces the month's partition of ``features_monthly``, then writes the label
rows of the month (``pending`` until its window closes) and refreshes every earlier month whose
window has closed since.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features.build import (
    build_feature_frame,
    cdr_window_months,
    select_cdr_window,
    summarize_cdr,
)
from features.calendar import add_months, months_between
from features.history import HISTORY_COLUMNS, history_reach
from features.labels import compute_labels, label_window, prepaid_inactive_subscribers
from features.params import FeatureParams
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run

log = logging.getLogger(__name__)

REQUIRED_SOURCES = ("subscriptions", "cdr", "billing", "care")


@dataclass
class FeatureReport:
    month: str
    subscribers: int
    columns: int
    hard_warnings: int
    label_months: list[str]


def check_inputs(lake: Lake, month: str) -> None:
    """Every required source of ``month`` was ingested and passed (or overrode) its quality gates."""
    if not lake.exists("data_quality"):
        raise InputNotReadyError(
            f"no data_quality table under {lake.cfg.lake_root}: run ingest for {month} first"
        )
    rows = {
        r.source: r.publishable
        for r in lake.read("data_quality")
        .where(F.col("month") == month)
        .select("source", "publishable")
        .collect()
    }
    missing = [s for s in REQUIRED_SOURCES if s not in rows]
    blocked = [s for s in REQUIRED_SOURCES if rows.get(s) is False]
    if missing:
        raise InputNotReadyError(f"{month}: not ingested yet for {', '.join(missing)} (run jobs/ingest.py)")
    if blocked:
        raise InputNotReadyError(
            f"{month}: data-quality gates failed for {', '.join(blocked)}; the month is not publishable "
            "(fix the delivery, or re-ingest with --override-gates)"
        )


def available_cdr_months(lake: Lake, month: str, months: list[str]) -> list[str]:
    """Months of ``months`` with CDRs delivered by the end of ``month``."""
    held = lake.partition_values("cdr", "event_month", "delivery_month")
    return sorted({e for e, d in held if e in months and d is not None and d <= month})


def read_history(lake: Lake, month: str, params: FeatureParams) -> DataFrame | None:
    """The earlier ``features_monthly`` rows the long windows read (``features.history``): months are
    built in order, and a month not built is simply absent (``history_months_Nm`` counts what exists)."""
    if not lake.exists("features_monthly"):
        return None
    months = [add_months(month, -k) for k in range(1, history_reach(params.history_windows) + 1)]
    table = lake.read("features_monthly")
    missing = sorted(set(months) - {m for (m,) in lake.partition_values("features_monthly", "month")})
    if missing and len(missing) < len(months):
        log.info(
            "%s: no features_monthly rows for %s: the long windows hold fewer months",
            month,
            ", ".join(missing),
        )
    return table.where(F.col("month").isin(*months)).select("subscriber_id", "month", *HISTORY_COLUMNS)


def build_features_month(spark: SparkSession, cfg: Config, month: str) -> FeatureReport:
    """Build and write ``features_monthly`` for ``month``, then the labels known at that point."""
    lake = Lake(spark, cfg)
    params = cfg.features
    with recorded_run(lake, "build_features", month) as run:
        check_inputs(lake, month)
        run.input_versions = lake.versions(list(REQUIRED_SOURCES))
        months = cdr_window_months(month, params)
        available = available_cdr_months(lake, month, months)
        missing = sorted(set(months) - set(available))
        if missing:
            log.warning(
                "%s: no CDRs for %s: usage of those months is null (unknown)", month, ", ".join(missing)
            )
        # the window itself is not cached (a scan of pruned Parquet columns per aggregation costs less
        # than materialising it); its per-subscriber summary, read by three families, is
        cdr_window = select_cdr_window(lake.read("cdr"), month=month, params=params)
        log.info("%s: building features (CDR months %s)", month, ", ".join(available))
        summary = summarize_cdr(cdr_window, month=month, params=params).persist(StorageLevel.MEMORY_AND_DISK)
        frame = build_feature_frame(
            cdr_summary=summary,
            month=month,
            snapshots=lake.read("subscriptions"),
            cdr_window=cdr_window,
            billing=lake.read("billing"),
            care=lake.read("care"),
            available_cdr_months=available,
            params=params,
            cohorts=cfg.cohorts,
            churn=cfg.churn,
            history=read_history(lake, month, params),
        )
        try:
            result = lake.replace(frame, "features_monthly", {"month": [month]}, merge_schema=True)
        finally:
            summary.unpersist()
        stats = (
            lake.read("features_monthly")
            .where(F.col("month") == month)
            .agg(F.count("*").alias("n"), F.count_if("hard_warning").alias("hard"))
            .first()
        )
        log.info("%s: features for %d subscribers (%d hard warnings)", month, stats.n, stats.hard)
        label_months = write_labels(lake, month)
        run.output_versions = lake.versions(["features_monthly", "labels_monthly"])
        run.row_counts = {"features": result.rows_added, "subscribers": stats.n, "hard_warnings": stats.hard}
        run.flags = {"label_months": label_months, "missing_cdr_months": missing}
        return FeatureReport(month, stats.n, len(frame.columns), stats.hard, label_months)


def _label_frame(lake: Lake, snapshot_month: str, subscription_months: set[str]) -> DataFrame:
    cfg = lake.cfg
    churn = cfg.churn
    first, last = label_window(snapshot_month, gap_months=churn.gap_months, window_months=churn.window_months)
    available = last in subscription_months
    population = lake.read("features_monthly").where(F.col("month") == snapshot_month)
    later = lake.read("subscriptions").where((F.col("month") > snapshot_month) & (F.col("month") <= last))
    inactive = None
    if available and churn.prepaid_inactivity_days:
        window = months_between(first, last)
        cdr = lake.read("cdr").where(F.col("event_month").isin(*window))
        bills = lake.read("billing").where(F.col("bill_month").isin(*window))
        prepaid = population.where(F.col("plan_type") == "prepaid")
        inactive = prepaid_inactive_subscribers(
            prepaid, cdr, bills, first_month=first, last_month=last, days=churn.prepaid_inactivity_days
        )
    return compute_labels(
        population,
        later,
        month=snapshot_month,
        rules=churn,
        available=available,
        prepaid_inactive=inactive,
    )


def write_labels(lake: Lake, month: str) -> list[str]:
    """Write labels of ``month`` and of earlier snapshot months whose window has closed since."""
    churn = lake.cfg.churn
    subscription_months = {m for (m,) in lake.partition_values("subscriptions", "month")}
    feature_months = sorted(m for (m,) in lake.partition_values("features_monthly", "month") if m <= month)
    settled: set[str] = set()
    if lake.exists("labels_monthly"):
        settled = {
            r.month
            for r in lake.read("labels_monthly")
            .where(F.col("label_available"))
            .select("month")
            .distinct()
            .collect()
        }
    todo = [
        m
        for m in feature_months
        if m == month
        or (
            m not in settled
            and label_window(m, gap_months=churn.gap_months, window_months=churn.window_months)[1]
            in subscription_months
        )
    ]
    frames = [_label_frame(lake, m, subscription_months) for m in todo]
    labels = frames[0]
    for f in frames[1:]:
        labels = labels.unionByName(f)
    lake.replace(labels, "labels_monthly", {"month": todo})
    log.info("labels written for snapshot months %s", ", ".join(todo))
    return todo
