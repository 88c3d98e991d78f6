"""What a load holds and whether it may be published: load statistics, the gates, ``data_quality`` rows.

The statistics are measured on the staged silver files, before the commit; a failed gate stops the
commit (unless overridden) and still leaves its ``data_quality`` row, so a refused month says why.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features.calendar import add_months, months_between
from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.core.privacy import mask_number
from pipelines.ingest.spec import LoadStats, SourceSpec, evaluate_gates, trailing_daily_mean


class GateFailedError(RuntimeError):
    """A data-quality gate failed: the month is not publishable."""

    def __init__(self, message: str, *, stats: LoadStats, failures: list[str]) -> None:
        super().__init__(message)
        self.stats = stats
        self.failures = failures


DQ_SCHEMA = (
    "source string, month string, files int, rows_read bigint, rows_loaded bigint, rows_quarantined bigint, "
    "duplicates bigint, late_records bigint, distinct_subscribers bigint, quarantine_by_reason string, "
    "extra_columns string, daily_counts string, incomplete_delivery boolean, gate_failures string, "
    "gates_overridden boolean, publishable boolean, msisdn_conflicts bigint"
)


@dataclass
class SourceReport:
    source: str
    month: str
    files: int = 0
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    duplicates: int = 0
    late_records: int = 0
    distinct_subscribers: int = 0
    quarantine_by_reason: dict[str, int] = field(default_factory=dict)
    extra_columns: dict[str, list[str]] = field(default_factory=dict)
    daily_counts: dict[str, int] = field(default_factory=dict)
    incomplete_delivery: bool = False
    gate_failures: list[str] = field(default_factory=list)
    gates_overridden: bool = False
    # numbers claimed by two subscribers at once in the snapshots (CDRs: the later activation wins)
    msisdn_conflicts: int = 0

    @property
    def publishable(self) -> bool:
        return not self.gate_failures or self.gates_overridden

    def row(self) -> dict[str, Any]:
        """The ``data_quality`` row, by column name."""
        as_json = ("quarantine_by_reason", "extra_columns", "daily_counts", "gate_failures")
        values = {k: json.dumps(v, sort_keys=True) if k in as_json else v for k, v in vars(self).items()}
        return {**values, "publishable": self.publishable}


def write_quality(lake: Lake, report: SourceReport) -> None:
    """Replace the (source, month) partition of ``data_quality`` with the report's row."""
    schema = T._parse_datatype_string(DQ_SCHEMA)
    row = report.row()
    lake.replace_rows(
        [tuple(row[f.name] for f in schema.fields)],
        schema,
        "data_quality",
        {"source": [report.source], "month": [report.month]},
        merge_schema=True,  # lakes from before a report column was added
    )


def read_trailing_daily_mean(lake: Lake, source: str, month: str, n: int, late_days: int) -> float | None:
    """The trailing daily mean of ``source`` of the ``n`` months before ``month`` (publishable ones)."""
    if not lake.exists("data_quality"):
        return None
    previous = months_between(add_months(month, -n), add_months(month, -1))
    rows = (
        lake.read("data_quality")
        .where((F.col("source") == source) & F.col("month").isin(previous) & F.col("publishable"))
        .select("month", "daily_counts")
        .collect()
    )
    return trailing_daily_mean([(r.month, r.daily_counts) for r in rows], late_days=late_days)


def load_stats(loaded: DataFrame, spec: SourceSpec, rows_read: int, rows_quarantined: int) -> LoadStats:
    """Rows, approximate distinct subscribers, (event sources) rows per event day and (unique-live
    sources) values held by several live rows, of the staged load."""
    shared: list[str] = []
    if spec.unique_live_column:
        col = spec.unique_live_column
        # the values reach a gate message (data_quality, pipeline_runs, the console): masked
        shared = [
            str(mask_number(r[col]))
            for r in loaded.where(F.col("status") != "deactivated")
            .groupBy(col)
            .count()
            .where("count > 1")
            .orderBy(col)
            .limit(5)
            .collect()
        ]
    if not spec.event_column:
        r = loaded.agg(F.count("*").alias("n"), F.approx_count_distinct("subscriber_id").alias("d")).first()
        return LoadStats(rows_read, rows_quarantined, int(r.n), int(r.d), shared_values=shared)
    rows = (  # a rollup: the per-day rows and, under day None, the total
        loaded.rollup(F.date_format(spec.event_column, "yyyy-MM-dd").alias("day"))
        .agg(F.count("*").alias("n"), F.approx_count_distinct("subscriber_id").alias("d"))
        .collect()
    )
    n, d = next(((int(r.n), int(r.d)) for r in rows if r.day is None), (0, 0))
    daily = {r.day: int(r.n) for r in rows if r.day is not None}
    return LoadStats(rows_read, rows_quarantined, n, d, daily_counts=daily, shared_values=shared)


def check_staged(
    staged: DataFrame,
    *,
    spec: SourceSpec,
    month: str,
    cfg: Config,
    rows_read: int,
    rows_quarantined: int,
    trailing_mean: float | None,
    override_gates: bool,
) -> tuple[LoadStats, list[str]]:
    """Load statistics and gates from the staged silver files; a failed gate (not overridden) raises
    :class:`GateFailedError`, which stops the commit."""
    stats = load_stats(staged, spec, rows_read, rows_quarantined)
    failures = evaluate_gates(
        stats,
        spec=spec,
        month=month,
        gates=cfg.ingest.gates,
        late_days=cfg.ingest.late_days,
        trailing_mean=trailing_mean,
    )
    if failures and not override_gates:
        raise GateFailedError(
            f"{spec.name} {month}: data-quality gate failed, month not publishable: "
            + "; ".join(failures)
            + " (override with --override-gates)",
            stats=stats,
            failures=failures,
        )
    return stats, failures


def report_with_stats(
    report: SourceReport, spec: SourceSpec, stats: LoadStats, failures: list[str], *, overridden: bool
) -> SourceReport:
    """The report of a load, from its measured statistics and the gates it failed."""
    late = sum(v for d, v in stats.daily_counts.items() if not d.startswith(report.month))
    return dataclasses.replace(
        report,
        rows_read=stats.rows_read,
        rows_quarantined=stats.rows_quarantined,
        rows_loaded=stats.rows_loaded,
        duplicates=stats.rows_read - stats.rows_quarantined - stats.rows_loaded,
        distinct_subscribers=stats.distinct_subscribers,
        daily_counts=dict(stats.daily_counts),
        late_records=late if spec.event_column else 0,
        gate_failures=list(failures),
        gates_overridden=overridden,
    )
