"""Ingest one day's delivery of a daily source into its ``<source>_daily`` table.

The same checks as a monthly delivery (``pipelines.ingest``): ``_SUCCESS``, every file's columns before
anything is read, each row validated by ``features.cleaning``, CDR numbers resolved to their subscriber at
the event's time, rejected rows quarantined with file, row number and reason, repeated records loaded
once, and one ``data_quality`` row. On top, the day's window: an event after the day is ``future_event``,
one more than ``ingest.late_days`` before it ``too_old_event``.

The daily tables are apart from the monthly silver ones: the month's delivery supersedes its days (the
triggers read a month's days from the monthly tables once that month is delivered, see
:func:`pipelines.daily.history.out_events_by_day`), so nothing is counted twice. Quarantine and
``data_quality`` rows of a day carry ``source = <source>_daily_<day>`` and the day's month, so the
monthly housekeeping (raw values' retention) treats them like any other delivery.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features import contract as C
from features.cleaning import RAW_COL, REASONS_COL, validate_rows
from pipelines.core.lake import Lake
from pipelines.core.privacy import PHONE_COLUMNS, pseudonym_key, pseudonymise_rows
from pipelines.ingest.dedupe import dedupe_repeated
from pipelines.ingest.files import list_delivery
from pipelines.ingest.quality import SourceReport, write_quality
from pipelines.ingest.read import block_stats, quarantine_rows, read_delivery
from pipelines.ingest.subscribers import read_msisdn_intervals, with_subscriber

log = logging.getLogger(__name__)

POSITION_COLUMNS = ("_fid", "_block", "_pid", "_pos")


def daily_table(source: str) -> str:
    return f"{source}_daily"


def day_scope(source: str, day: str) -> str:
    """The ``source`` of a day's quarantine and ``data_quality`` rows (their ``month`` is the day's month)."""
    return f"{source}_daily_{day}"


def day_folder(landing_root: str, source: str, day: str) -> Path:
    return Path(landing_root) / source / f"day={day}"


def with_day_window(checked: DataFrame, *, source: str, day: str, late_days: int) -> DataFrame:
    """Reject events dated after ``day`` (``future_event``) or more than ``late_days`` before it
    (``too_old_event``), on top of the monthly rules; a row newly rejected keeps its values as text."""
    ts = F.col(C.EVENT_COLUMNS[source])
    start = dt.date.fromisoformat(day)
    end = dt.datetime.combine(start + dt.timedelta(days=1), dt.time())
    oldest = dt.datetime.combine(start - dt.timedelta(days=late_days), dt.time())
    extra = F.when(ts >= F.lit(end), F.lit(C.FUTURE_EVENT)).when(ts < F.lit(oldest), F.lit(C.TOO_OLD_EVENT))
    good = F.size(REASONS_COL) == 0
    newly = good & extra.isNotNull()
    as_text = F.struct(*[F.col(c).cast("string").alias(c) for c in C.columns(source)])
    return checked.withColumns(
        {
            REASONS_COL: F.when(extra.isNull(), F.col(REASONS_COL)).otherwise(
                F.array_union(F.col(REASONS_COL), F.array(extra))
            ),
            RAW_COL: F.when(newly, as_text).otherwise(F.col(RAW_COL)),
        }
    )


def ingest_day(lake: Lake, source: str, day: str, *, allow_incomplete: bool = False) -> SourceReport | None:
    """Load ``<landing>/<source>/day=<day>/`` into ``<source>_daily`` (replacing that day); None when the
    day has no delivery of ``source``."""
    cfg = lake.cfg
    folder = day_folder(cfg.landing_root, source, day)
    if not folder.exists():
        log.info("%s %s: no daily delivery", source, day)
        return None
    month, scope = day[:7], day_scope(source, day)
    # a quiet day may bring no care contact or port request (a folder with only _SUCCESS); a day
    # without a single CDR is a failed export
    files, incomplete = list_delivery(
        folder, source, allow_incomplete=allow_incomplete, allow_empty=source != "cdr"
    )
    raw = read_delivery(lake.spark, files, source, local_timezone=cfg.ingest.local_timezone)
    checked = validate_rows(raw, source=source, month=month, late_days=cfg.ingest.late_days)
    checked = with_day_window(checked, source=source, day=day, late_days=cfg.ingest.late_days)
    key = pseudonym_key(cfg.privacy)
    if key is not None:
        checked = pseudonymise_rows(checked, source, key, raw_col=RAW_COL)
    if source == "cdr":
        checked = with_subscriber(checked, read_msisdn_intervals(lake, month))
    checked = checked.cache()
    try:
        by_reason, good_count, blocks = block_stats(checked)
        good = checked.where(F.size(REASONS_COL) == 0).drop(REASONS_COL, RAW_COL)
        deduped = dedupe_repeated(good, list(C.KEYS[source])).drop(*POSITION_COLUMNS)
        columns = [*C.columns(source), *(["subscriber_id"] if source == "cdr" else [])]
        loaded = deduped.select(*columns, F.lit(day).alias("day")).cache()
        rows_loaded = loaded.count()
        lake.replace(loaded, daily_table(source), {"day": [day]})
        loaded.unpersist()
        clear = cfg.privacy.pseudonymise or cfg.privacy.quarantine_raw_days > 0
        masked = () if clear else PHONE_COLUMNS.get(source, ())
        quarantine = quarantine_rows(checked, blocks, files, source=scope, month=month, masked=masked)
        lake.replace(quarantine, "quarantine", {"source": [scope], "month": [month]})
    finally:
        checked.unpersist()
    rows_quarantined = sum(by_reason.values())
    report = SourceReport(
        scope,
        month,
        files=len(files),
        rows_read=good_count + rows_quarantined,
        rows_loaded=rows_loaded,
        rows_quarantined=rows_quarantined,
        duplicates=good_count - rows_loaded,
        quarantine_by_reason=by_reason,
        daily_counts={day: rows_loaded},
        incomplete_delivery=incomplete,
    )
    write_quality(lake, report)
    log.info(
        "%s %s: read %d, loaded %d, quarantined %d, duplicates %d",
        source,
        day,
        report.rows_read,
        rows_loaded,
        rows_quarantined,
        report.duplicates,
    )
    return report
