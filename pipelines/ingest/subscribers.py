"""CDR numbers resolved to the subscriber who held them at the event's time, from the snapshots.

A number moves between subscribers (recycled, contested); the subscription snapshots loaded so far say
who held it when. A good CDR whose number nobody held at that time is quarantined (``unknown_msisdn``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import contract as C
from features.cleaning import RAW_COL, REASONS_COL, compute_msisdn_intervals, resolve_msisdn
from pipelines.core.lake import Lake
from pipelines.core.privacy import mask_column, mask_number

log = logging.getLogger(__name__)


def latest_snapshot(lake: Lake, month: str) -> str:
    """The latest snapshot month loaded up to ``month`` (``month`` when none is)."""
    loaded = [m for (m,) in lake.partition_values("subscriptions", "month") if m is not None and m <= month]
    return max(loaded, default=month)


def read_msisdn_intervals(lake: Lake, month: str) -> DataFrame:
    """Who held each number when: from the subscription snapshots loaded up to ``month``."""
    latest = latest_snapshot(lake, month)
    snapshots = lake.read("subscriptions")
    damaged = None
    if lake.exists("quarantine"):
        raw = F.col("raw_values")
        damaged = damaged_listings(
            lake.read("quarantine")
            .where(F.col("source") == "subscriptions")
            .select(
                F.get_json_object(raw, "$.subscriber_id").alias("subscriber_id"),
                F.get_json_object(raw, "$.msisdn").alias("msisdn"),
                "month",
            ),
            snapshots,
        )
    return compute_msisdn_intervals(snapshots, latest_month=latest, damaged_listings=damaged)


def damaged_listings(quarantined: DataFrame, snapshots: DataFrame) -> DataFrame:
    """Quarantined snapshot rows (``subscriber_id, msisdn, month``) with the number their subscriber holds
    in the good snapshots, whether quarantine kept it in clear or masked (``privacy``).

    A damaged row only ever extends a hold known from good rows, so the number is looked up among that
    subscriber's good pairs: the one equal to it, or whose mask equals it."""
    pairs = snapshots.select(F.col("subscriber_id").alias("_s"), F.col("msisdn").alias("_m")).distinct()
    q = quarantined.where(F.col("msisdn").isNotNull())
    matched = q.join(
        pairs,
        (q["subscriber_id"] == F.col("_s"))
        & ((q["msisdn"] == F.col("_m")) | (q["msisdn"] == mask_column(F.col("_m")))),
    )
    return matched.select("subscriber_id", F.col("_m").alias("msisdn"), "month")


def count_msisdn_conflicts(intervals: DataFrame, month: str) -> int:
    """Numbers claimed by two subscribers at once in the snapshots (logged with a few examples)."""
    conflicts = intervals.where("conflict").agg(
        F.count("*").alias("n"), F.slice(F.sort_array(F.collect_set("msisdn")), 1, 5).alias("some")
    )
    found = conflicts.first()
    return log_msisdn_conflicts(int(found.n), found.some, month)


def log_msisdn_conflicts(n: int, some: Sequence[str], month: str) -> int:
    """``n`` numbers claimed twice at once, warned with ``some`` of them (masked)."""
    if n:
        log.warning(
            "cdr %s: %d number(s) claimed by two subscribers at once in the snapshots (the later "
            "activation owns the events): %s",
            month,
            n,
            ", ".join(str(mask_number(m)) for m in some),
        )
    return n


def with_subscriber(validated: DataFrame, intervals: DataFrame) -> DataFrame:
    """Resolve CDR numbers as of event time; a good row whose number belongs to nobody is quarantined."""
    resolved = resolve_msisdn(validated, intervals)
    unknown = (F.size(REASONS_COL) == 0) & F.col("subscriber_id").isNull()
    reasons = F.when(unknown, F.array(F.lit(C.UNKNOWN_MSISDN))).otherwise(F.col(REASONS_COL))
    return unknown_as_text(resolved.withColumn(REASONS_COL, reasons))


def unknown_as_text(resolved: DataFrame) -> DataFrame:
    """The raw values of a row quarantined only for its unknown number: it parsed cleanly, so they are
    its typed values as text."""
    only_unknown = (F.size(REASONS_COL) == 1) & (F.col(REASONS_COL)[0] == C.UNKNOWN_MSISDN)
    as_text = F.struct(*[F.col(c).cast("string").alias(c) for c in C.columns("cdr")])
    return resolved.withColumn(RAW_COL, F.when(only_unknown, as_text).otherwise(F.col(RAW_COL)))
