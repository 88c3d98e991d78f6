"""Stage: keep the lake bounded (the monthly run's last stage, or ``jobs/housekeeping.py``).

Per table: null quarantine raw values past their retention (personal data), compact small files, vacuum
files no retained version needs (never an in-flight write's: :func:`pipelines.core.delta.vacuum`),
checkpoint the log and remove commit files past the log retention. Then job log files beyond the
configured count or age, and the MLflow retention (where the tracking layer provides it).

Why in the run: ``pipeline_runs`` gains a commit per stage run and is read by every monthly run; without
checkpoints and log cleanup its read grows with the lake's age, and a partition replaced every month
leaves its old files forever. Time is a parameter: the quarantine retention counts from the run month,
the log files' from ``now`` (the run's start); only vacuum's file ages are wall-clock by nature.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import types as T

from features.calendar import add_months, month_end, month_start, parse_month
from pipelines.core import delta
from pipelines.core.config import Config, HousekeepingConf, local_path
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run

log = logging.getLogger(__name__)

LOG_RETENTION_PROPERTY = "delta.logRetentionDuration"


@dataclass
class TableHousekeeping:
    """What housekeeping did to one table."""

    files_compacted: int = 0  # small files rewritten
    files_written: int = 0  # files they became
    files_vacuumed: int = 0
    log_files_removed: int = 0
    checkpoint: int | None = None  # the version checkpointed (None: already was)


@dataclass
class HousekeepingReport:
    """What one housekeeping pass did, by table, and to quarantine, logs and MLflow."""

    month: str
    tables: dict[str, TableHousekeeping] = field(default_factory=dict)
    quarantine_months_nulled: list[str] = field(default_factory=list)
    logs_removed: int = 0
    mlflow: str = "not available"
    output_versions: dict[str, int | None] = field(default_factory=dict)


def housekeeping_due(cfg: Config, month: str) -> str | None:
    """Why the monthly run tidies the lake in ``month`` (None: not this month)."""
    every = cfg.lake.housekeeping.every_months
    if every == 0:
        return None
    year, mon = parse_month(month)
    return f"every {every} month(s)" if (year * 12 + mon - 1) % every == 0 else None


def housekeeping_tables(cfg: Config) -> list[str]:
    """The tables housekeeping tidies: every table of the config (those not created yet are passed over)."""
    return list(cfg.lake.tables)


def housekeeping_month(lake: Lake, month: str, *, now: dt.datetime | None = None) -> HousekeepingReport:
    """Tidy the lake as of run ``month`` (quarantine retention counted from its end) at time ``now``
    (log files' ages; None: the wall clock, as a job's start); recorded in ``pipeline_runs`` with the
    table versions it wrote."""
    now = now or dt.datetime.now(dt.UTC)
    cfg = lake.cfg
    hk = cfg.lake.housekeeping
    report = HousekeepingReport(month)
    with recorded_run(lake, "housekeeping", month) as run:
        before = lake.versions(housekeeping_tables(cfg))
        report.quarantine_months_nulled = null_quarantine_raw(lake, as_of=next_month_start(month))
        for name in housekeeping_tables(cfg):
            if lake.exists(name):
                report.tables[name] = tidy_table(lake.path(name), hk, table=name)
        report.logs_removed = prune_logs(cfg, now=now)
        report.mlflow = _prune_mlflow(cfg, now=now)
        after = lake.versions(housekeeping_tables(cfg))
        # the versions this stage wrote: a rerun of the month's earlier stages counts them as unchanged
        report.output_versions = {t: v for t, v in after.items() if v != before.get(t)}
        run.output_versions = report.output_versions
        run.row_counts = {
            "files_compacted": sum(t.files_compacted for t in report.tables.values()),
            "files_vacuumed": sum(t.files_vacuumed for t in report.tables.values()),
            "log_files_removed": sum(t.log_files_removed for t in report.tables.values()),
            "job_logs_removed": report.logs_removed,
        }
        run.flags = {"quarantine_months_nulled": report.quarantine_months_nulled, "mlflow": report.mlflow}
    return report


def next_month_start(month: str) -> dt.date:
    """The first day after ``month``: when a run of ``month`` takes place at the earliest."""
    return month_start(add_months(month, 1))


def tidy_table(path: str, hk: HousekeepingConf, *, table: str | None = None) -> TableHousekeeping:
    """Compact, vacuum, checkpoint and clean the log of the Delta table at ``path``.

    Commits only what changes something: compaction with no small files, a vacuum with nothing to delete
    and a log retention already set make no commit, so a second pass leaves the version as it is.
    """
    name = table or path
    out = TableHousekeeping()
    wanted = f"interval {hk.log_retention_days} days"
    current = delta.open_table(path, name=name)
    if current.metadata().configuration.get(LOG_RETENTION_PROPERTY) != wanted:
        current.alter.set_table_properties({LOG_RETENTION_PROPERTY: wanted})
    if hk.compact:
        metrics = delta.open_table(path, name=name).optimize.compact(
            target_size=hk.target_file_mb * 1024 * 1024
        )
        out.files_compacted = int(metrics.get("numFilesRemoved", 0))
        out.files_written = int(metrics.get("numFilesAdded", 0))
    out.files_vacuumed = len(delta.vacuum(path, retention_hours=hk.vacuum_retention_hours))
    out.checkpoint, out.log_files_removed = checkpoint_and_clean_log(path)
    log.info(
        "housekeeping %s: %d small files into %d, %d vacuumed, %d commit files removed",
        name,
        out.files_compacted,
        out.files_written,
        out.files_vacuumed,
        out.log_files_removed,
    )
    return out


def checkpoint_and_clean_log(path: str) -> tuple[int | None, int]:
    """Checkpoint the current version (unless it is) and remove commit files past the table's log
    retention (``delta.logRetentionDuration``, by file age) that precede the checkpoint. Returns the
    version checkpointed (None: it already was) and how many log files went."""
    log_dir = Path(path.removeprefix("file://")) / "_delta_log"
    table = delta.open_table(path)
    checkpointed = None
    if last_checkpoint(path) != table.version():
        table.create_checkpoint()
        checkpointed = table.version()
    count = len(list(log_dir.glob("*"))) if log_dir.is_dir() else 0
    table.cleanup_metadata()
    return checkpointed, count - (len(list(log_dir.glob("*"))) if log_dir.is_dir() else 0)


def last_checkpoint(path: str) -> int | None:
    """The version of the table's latest checkpoint (None: none, or not a local table)."""
    marker = Path(path.removeprefix("file://")) / "_delta_log" / "_last_checkpoint"
    if not marker.is_file():
        return None
    return int(json.loads(marker.read_text())["version"])


def null_quarantine_raw(lake: Lake, *, as_of: dt.date) -> list[str]:
    """Null ``quarantine.raw_values`` of delivery months that ended ``quarantine_raw_days`` or more before
    ``as_of`` (the rows' file, row number and reasons stay). Returns the months rewritten: only those
    still holding a raw value, so a second pass writes nothing."""
    days = lake.cfg.lake.housekeeping.quarantine_raw_days
    privacy = lake.cfg.privacy
    if privacy.quarantine_raw_days > 0 and not privacy.pseudonymise:  # numbers kept in clear: this long only
        days = privacy.quarantine_raw_days if days is None else min(days, privacy.quarantine_raw_days)
    if days is None or not lake.exists("quarantine"):
        return []
    cutoff = as_of - dt.timedelta(days=days)
    old = sorted({m for (m,) in lake.partition_values("quarantine", "month") if m and month_end(m) < cutoff})
    if not old:
        return []
    rows = lake.read_arrow("quarantine", partitions={"month": old})
    holding = rows.filter(pc.is_valid(rows["raw_values"]))
    months = sorted(set(holding["month"].to_pylist()))
    if not months:
        return []
    rows = rows.filter(pc.is_in(rows["month"], value_set=pa.array(months)))
    schema = delta.spark_schema_of(lake.path("quarantine"))
    rows = rows.set_column(
        rows.schema.get_field_index("raw_values"), "raw_values", pa.nulls(rows.num_rows, pa.string())
    )
    sources = sorted(set(rows["source"].to_pylist()))
    values = [tuple(r[f.name] for f in schema.fields) for r in rows.to_pylist()]
    lake.replace_rows(values, _nullable(schema), "quarantine", {"source": sources, "month": months})
    log.info("quarantine: raw values of %s nulled (older than %d days)", ", ".join(months), days)
    return months


def _nullable(schema: T.StructType) -> T.StructType:
    return T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])


def prune_logs(cfg: Config, *, now: dt.datetime) -> int:
    """Remove job log files (``<lake.root>/_logs/*.log``) beyond the newest ``keep_logs`` or older than
    ``keep_logs_days`` before ``now``; returns how many went."""
    hk = cfg.lake.housekeeping
    root = local_path(str(cfg.lake_root))
    if root is None:
        return 0
    folder = Path(root) / "_logs"
    if not folder.is_dir():
        return 0
    files = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    doomed = files[hk.keep_logs :]
    if hk.keep_logs_days is not None:
        oldest = (now - dt.timedelta(days=hk.keep_logs_days)).timestamp()
        doomed += [p for p in files[: hk.keep_logs] if p.stat().st_mtime < oldest]
    for path in doomed:
        os.remove(path)
    return len(doomed)


def _prune_mlflow(cfg: Config, *, now: dt.datetime) -> str:
    """MLflow runs and model versions past their retention (never an aliased or promoted one)."""
    from pipelines.core import tracking

    if not tracking.store_exists(cfg):  # nothing trained yet: no store to create just to find it empty
        return "no store"
    result: Any = tracking.prune_mlflow(cfg, now=now)
    return str(result) if result is not None else "pruned"
