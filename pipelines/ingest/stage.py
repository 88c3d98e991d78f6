"""Stage: ingest one month of landing extracts into validated silver Delta tables.

Per source and month: check the delivery (``_SUCCESS``, readable files with the required columns; all
files are checked before anything is written), read every file with an explicit all-text schema, validate
each row (``features.cleaning``), quarantine rejected rows with file, row number, reason and raw values,
drop duplicates (last delivered copy wins; CDRs and care contacts already loaded from another delivery
are duplicates too), resolve CDR numbers to subscribers as of the event time, apply the data-quality
gates, then replace exactly what this delivery contributed. Re-running a month, or a redelivery of it,
gives the same tables.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from features import contract as C
from features.calendar import add_months
from features.cleaning import RAW_COL, REASONS_COL, validate_rows
from features.errors import MissingColumnsError
from pipelines.core import delta
from pipelines.core.config import Config, local_path
from pipelines.core.delta import WriteResult, scratch_folder
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.privacy import PHONE_COLUMNS, pseudonym_key, pseudonymise_rows
from pipelines.core.runner import one_line
from pipelines.core.spark import check_folder_shared, check_seen
from pipelines.ingest.arrow_load import (
    arrow_readable,
    keys_and_places,
    publisher,
    stage_checked,
    write_drops,
)
from pipelines.ingest.dedupe import (
    dedupe_repeated,
    drop_loaded_elsewhere,
    loaded_elsewhere_positions,
    repeated_positions,
    repeated_positions_arrow,
)
from pipelines.ingest.files import (
    LandingFile,
    MissingDeliveryError,
    UnreadableFileError,
    delivery_text_mb,
    extra_columns,
    list_delivery,
)
from pipelines.ingest.owners import (
    SNAPSHOT_COLUMNS,
    Owners,
    damaged_from_quarantine,
    holds_from_snapshots,
    owners_from,
)
from pipelines.ingest.quality import (
    GateFailedError,
    SourceReport,
    check_staged,
    read_trailing_daily_mean,
    report_with_stats,
    write_quality,
)
from pipelines.ingest.read import block_stats, quarantine_rows, read_delivery, unreadable_file
from pipelines.ingest.spec import INGEST_ORDER, SOURCE_SPECS, LoadStats, SourceSpec
from pipelines.ingest.subscribers import (
    count_msisdn_conflicts,
    latest_snapshot,
    log_msisdn_conflicts,
    read_msisdn_intervals,
    unknown_as_text,
    with_subscriber,
)

log = logging.getLogger(__name__)

# seconds per phase of the latest ingest of each (source, month) in this process: the benchmark's view
# of where the time goes (Spark is lazy: a phase holds the jobs it starts)
PHASES: dict[tuple[str, str], dict[str, float]] = {}
# the path (arrow or spark) of the latest ingest of each (source, month) in this process
PATHS: dict[tuple[str, str], str] = {}


@contextlib.contextmanager
def _phase(source: str, month: str, name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        PHASES.setdefault((source, month), {})[name] = round(time.perf_counter() - start, 2)


def ingest_month(
    spark: SparkSession,
    cfg: Config,
    month: str,
    *,
    sources: Sequence[str] | None = None,
    allow_incomplete: bool = False,
    override_gates: bool = False,
) -> dict[str, SourceReport]:
    """Ingest the sources of ``month`` (subscriptions first: CDR numbers resolve against them)."""
    lake = Lake(spark, cfg)
    wanted = list(sources) if sources else list(C.SOURCES)
    unknown = sorted(set(wanted) - set(C.SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; known: {', '.join(C.SOURCES)}")
    ordered = [s for s in INGEST_ORDER if s in wanted]

    def one(source: str) -> SourceReport | None:
        with recorded_run(lake, "ingest", month, scope=source) as run:
            spec = SOURCE_SPECS[source]
            run.input_versions = (
                {"subscriptions": lake.version("subscriptions")} if spec.resolves_subscriber else {}
            )
            run.flags = {"allow_incomplete": allow_incomplete, "override_gates": override_gates}
            report = ingest_source(
                lake, source, month, allow_incomplete=allow_incomplete, override_gates=override_gates
            )
            if report is None:
                run.flags["skipped"] = "no delivery"
                return None
            run.flags["incomplete_delivery"] = report.incomplete_delivery
            run.flags["gates_overridden"] = report.gates_overridden
            run.row_counts = {
                "read": report.rows_read,
                "loaded": report.rows_loaded,
                "quarantined": report.rows_quarantined,
                "duplicates": report.duplicates,
            }
            run.output_versions = lake.versions([source, "quarantine", "data_quality"])
            return report

    # the subscriptions first (the CDRs resolve numbers against them), then the others side by side;
    # every source runs to its end, and the first failure (in ingest order) is raised after them all
    first = [s for s in ordered if s == "subscriptions"]
    rest = [s for s in ordered if s != "subscriptions"]
    results: dict[str, SourceReport | None] = {s: one(s) for s in first}
    workers = min(cfg.ingest.parallel_sources, len(rest)) or 1
    with ThreadPoolExecutor(workers, thread_name_prefix="ingest") as pool:
        futures = {s: pool.submit(contextvars.copy_context().run, one, s) for s in rest}
        errors = []
        for source, future in futures.items():
            try:
                results[source] = future.result()
            except Exception as exc:
                errors.append(exc)
    if errors:
        raise errors[0]
    return {s: r for s in ordered if (r := results.get(s)) is not None}


def ingest_source(
    lake: Lake,
    source: str,
    month: str,
    *,
    allow_incomplete: bool = False,
    override_gates: bool = False,
) -> SourceReport | None:
    """Ingest one source-month; returns None when an optional source has no delivery."""
    cfg = lake.cfg
    spec = SOURCE_SPECS[source]
    folder = Path(cfg.landing_root) / source / f"month={month}"
    if not folder.exists():
        if spec.optional:
            log.info("%s %s: no delivery (optional source)", source, month)
            return None
        raise MissingDeliveryError(f"{folder}: no delivery for {source} {month}")
    try:
        files, incomplete = list_delivery(
            folder, source, allow_incomplete=allow_incomplete, allow_empty=spec.optional
        )
    except (UnreadableFileError, MissingColumnsError) as exc:
        write_quality(lake, SourceReport(source, month, gate_failures=[one_line(exc)]))
        raise
    report = SourceReport(source, month, files=len(files), incomplete_delivery=incomplete)
    report.extra_columns = extra_columns(files, source)
    PHASES.pop((source, month), None)
    scratch = contextlib.ExitStack()  # the Arrow path's staged files, removed when the source is done
    with scratch:
        # either path's tasks read the landing files and write the lake's (cluster: shared folders)
        if files:
            check_seen(lake.spark, files[0].path, cfg.landing_root)
        check_folder_shared(lake.spark, cfg.lake_root)
        # the tasks write with pyarrow's local filesystem: a lake on a cluster's shared folder, not S3
        local = local_path(lake.path(source)) is not None
        if cfg.ingest.path == "arrow" and local and arrow_readable(files):
            PATHS[(source, month)] = "arrow"
            done = _ingest_arrow(lake, spec, report, files, scratch, override_gates=override_gates)
            if done is not None:
                return done
        PATHS[(source, month)] = "spark"
        raw = read_delivery(lake.spark, files, source, local_timezone=cfg.ingest.local_timezone)
        checked = validate_rows(raw, source=source, month=month, late_days=cfg.ingest.late_days)
        return _resolve_and_finish(lake, spec, report, checked, files, override_gates=override_gates)


def _ingest_arrow(
    lake: Lake, spec: SourceSpec, report: SourceReport, files: Sequence[LandingFile],
    scratch: contextlib.ExitStack, *, override_gates: bool,
) -> SourceReport | None:  # fmt: skip
    """The Arrow path (:mod:`pipelines.ingest.arrow_load`); None when a file needs the Spark path."""
    cfg, spark, source, month = lake.cfg, lake.spark, spec.name, report.month
    owners = _owners(lake, report) if spec.resolves_subscriber else None
    target = scratch.enter_context(scratch_folder(lake.path(source), "ingest"))
    with _phase(source, month, "parse_check"):
        staged = stage_checked(
            spark, files, source=source, month=month, late_days=cfg.ingest.late_days, target=target,
            key=pseudonym_key(cfg.privacy), owners=owners,
        )  # fmt: skip
    if staged is None:
        return None
    # what _finish_source reads for the quarantine: the rejected rows alone
    checked = unknown_as_text(staged.rejected_rows) if spec.resolves_subscriber else staged.rejected_rows
    blocks = None  # one task per file: a row's position is its record number in the file, from 0
    if staged.rejected:
        blocks = spark.createDataFrame(
            [(fid, 0, fid, 0, 0) for fid, _ in staged.files],
            "_fid int, _block long, _pid int, _first long, _offset long",
        )
    keys = list(spec.keys)

    def publish(check: Callable[[DataFrame], Any]) -> WriteResult:
        good = staged.good_rows
        place = [c for c in ("_fid", "_block", "_pos", spec.event_column) if c and c not in keys]
        keyed = _add_partition_columns(good.select(*keys, *place), spec, month, keep_place=True)
        with _phase(source, month, "dedupe"):
            drops: list[pa.Table] = []
            if staged.files:  # the repeated keys in the driver while they fit (ingest.driver_max_rows)
                if staged.good <= cfg.ingest.driver_max_rows:
                    drops.append(repeated_positions_arrow(keys_and_places(staged, keys), keys))
                else:
                    drops.append(repeated_positions(keyed, keys).toArrow())
                elsewhere = loaded_elsewhere_positions(lake, keyed, spec, month)
                if elsewhere is not None:
                    drops.append(elsewhere.toArrow())
            dropped, n_dropped = write_drops(drops, f"{target.removeprefix('file://')}/drops.parquet")
        schema = _add_partition_columns(good, spec, month).select(*spec.silver_columns()).schema
        with _phase(source, month, "silver"):
            return lake.write_files(
                schema,
                source,
                publisher(spark, staged, spec, month, schema, dropped, staged.good - n_dropped),
                partitions=spec.replaced_partitions(month),
                partition_by=spec.partition_by,
                before_commit=check,
            )

    return _finish_source(
        lake, spec, report, checked, files, override_gates,
        counted=(staged.rejected, staged.good, blocks), publish=publish,
    )  # fmt: skip


def _resolve_and_finish(
    lake: Lake, spec: SourceSpec, report: SourceReport, checked: DataFrame, files: Sequence[LandingFile], *,
    override_gates: bool,
) -> SourceReport:  # fmt: skip
    """The Spark path: pseudonymise and resolve numbers, then :func:`_finish_source` (a failed read names
    its file)."""
    cfg, spark, source = lake.cfg, lake.spark, spec.name
    key = pseudonym_key(cfg.privacy)
    if key is not None:  # before anything is resolved, stored or counted: no clear number goes further
        checked = pseudonymise_rows(checked, source, key, raw_col=RAW_COL)
    intervals = None
    if spec.resolves_subscriber:
        intervals = _msisdn_intervals(lake, report)
        checked = with_subscriber(checked, intervals)
    # the checked rows are read three times (statistics, duplicates, silver write) and live only for this
    # source: cached uncompressed in memory while the delivery is small enough, else on local disk
    checked = cache_checked(spark, checked, files, cfg.ingest.memory_cache_max_mb)
    try:
        return _finish_source(lake, spec, report, checked, files, override_gates)
    except (GateFailedError, UnreadableFileError):
        raise
    except Exception as exc:
        unreadable = unreadable_file(exc, files)
        if unreadable is None:
            raise
        report.gate_failures = [str(unreadable)]
        write_quality(lake, report)
        raise unreadable from None
    finally:
        checked.unpersist()
        if intervals is not None:
            intervals.unpersist()


def _owners(lake: Lake, report: SourceReport) -> Owners:
    """Who held each number when, for the Arrow tasks: built in the driver from the snapshots while they
    hold at most ``ingest.driver_max_rows`` rows (the same holds as Spark's, without a Spark job), else
    by Spark; the conflicts counted into ``report``."""
    rows = lake.count_rows("subscriptions")
    if rows is not None and rows <= lake.cfg.ingest.driver_max_rows:
        try:
            return _driver_owners(lake, report)
        except delta.UnsupportedTableError:  # a table only the native connector reads
            pass
    intervals = _msisdn_intervals(lake, report)
    try:
        return owners_from(intervals.select("msisdn", "subscriber_id", "valid_from", "valid_to").toArrow())
    finally:
        intervals.unpersist()


def _driver_owners(lake: Lake, report: SourceReport) -> Owners:
    """:func:`read_msisdn_intervals` and :func:`count_msisdn_conflicts` in this process."""
    with _phase(report.source, report.month, "intervals"):
        latest = latest_snapshot(lake, add_months(report.month, 1))
        snapshots = lake.read_arrow("subscriptions", columns=SNAPSHOT_COLUMNS)
        damaged = None
        if lake.exists("quarantine"):
            quarantined = lake.read_arrow(
                "quarantine", columns=["raw_values", "month"], partitions={"source": ["subscriptions"]}
            )
            damaged = damaged_from_quarantine(quarantined, snapshots)
        holds = holds_from_snapshots(snapshots, latest_month=latest, damaged_listings=damaged)
        claimed = holds.filter(holds["conflict"])
        some = sorted(set(claimed["msisdn"].to_pylist()))[:5]
        report.msisdn_conflicts = log_msisdn_conflicts(claimed.num_rows, some, report.month)
        return owners_from(holds)


def _msisdn_intervals(lake: Lake, report: SourceReport) -> DataFrame:
    """Who held each number when, built once from the snapshots and persisted (read twice: the conflict
    count, then the resolution); the conflicts counted into ``report``. The caller unpersists it."""
    with _phase(report.source, report.month, "intervals"):
        intervals = read_msisdn_intervals(lake, add_months(report.month, 1))
        intervals = intervals.persist(StorageLevel.MEMORY_AND_DISK)
        report.msisdn_conflicts = count_msisdn_conflicts(intervals, report.month)
    return intervals


CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"
_CACHE_LOCK = threading.Lock()


def cache_checked(
    spark: SparkSession, df: DataFrame, files: Sequence[LandingFile], memory_max_mb: int
) -> DataFrame:
    """``df`` cached uncompressed in memory when the delivery holds at most ``memory_max_mb`` of text,
    else on local disk.

    Uncompressed, the memory cache is faster to build than a compressed one; but a large delivery held in
    memory runs the executor heap out (tasks fail and are retried) while the disk cache of the same rows
    costs about the same time.
    """
    if delivery_text_mb(files) > memory_max_mb:
        return df.persist(StorageLevel.DISK_ONLY)
    # the compression setting applies when the cache is defined: sources ingested side by side take
    # turns, each restoring what it found
    with _CACHE_LOCK:
        compressed = spark.conf.get(CACHE_COMPRESSED, "true")
        spark.conf.set(CACHE_COMPRESSED, "false")
        try:
            return df.persist(StorageLevel.MEMORY_AND_DISK)
        finally:
            spark.conf.set(CACHE_COMPRESSED, compressed)


Counted = tuple[dict[str, int], int, DataFrame | None]  # rejected rows by reason, good rows, blocks
Publish = Callable[[Callable[[DataFrame], Any]], WriteResult]  # writes silver, gated by the check given


def _finish_source(
    lake: Lake,
    spec: SourceSpec,
    report: SourceReport,
    checked: DataFrame,
    files: Sequence[LandingFile],
    override_gates: bool,
    *,
    counted: Counted | None = None,
    publish: Publish | None = None,
) -> SourceReport:
    """Count and locate the rejected rows, drop duplicates, write silver (gated), quarantine and quality.

    ``counted`` and ``publish``: the Arrow path's counts and silver write (by default Spark's, from
    ``checked``)."""
    source, month, cfg = spec.name, report.month, lake.cfg
    if counted is None:
        with _phase(source, month, "block_stats"):
            counted = block_stats(checked)
    quarantine_by_reason, good_count, blocks = counted
    rows_quarantined = sum(quarantine_by_reason.values())
    if publish is None:
        publish = _spark_publish(lake, spec, month, checked, good_count)
    trailing = None
    if spec.event_column:
        trailing = read_trailing_daily_mean(
            lake, source, month, cfg.ingest.gates.cdr_trailing_months, cfg.ingest.late_days
        )

    def check(staged: DataFrame) -> tuple[LoadStats, list[str]]:
        return check_staged(
            staged,
            spec=spec,
            month=month,
            cfg=cfg,
            rows_read=good_count + rows_quarantined,
            rows_quarantined=rows_quarantined,
            trailing_mean=trailing,
            override_gates=override_gates,
        )

    report = dataclasses.replace(report, quarantine_by_reason=quarantine_by_reason)
    try:
        stats, failures = publish(check).checked
    except GateFailedError as exc:
        write_quality(lake, report_with_stats(report, spec, exc.stats, exc.failures, overridden=False))
        raise
    report = report_with_stats(report, spec, stats, failures, overridden=bool(failures))
    # phone numbers in clear only where the operator keeps them for a while (the housekeeping nulls them
    # after privacy.quarantine_raw_days); pseudonyms are kept (no number to protect, and they still match)
    clear = cfg.privacy.pseudonymise or cfg.privacy.quarantine_raw_days > 0
    masked = () if clear else PHONE_COLUMNS.get(source, ())
    quarantine = quarantine_rows(checked, blocks, files, source=source, month=month, masked=masked)
    with _phase(source, month, "quarantine"):
        lake.replace(quarantine, "quarantine", {"source": [source], "month": [month]})
    with _phase(source, month, "quality"):
        write_quality(lake, report)
    log.info(
        "%s %s: read %d, loaded %d, quarantined %d, duplicates %d%s",
        source,
        month,
        report.rows_read,
        report.rows_loaded,
        report.rows_quarantined,
        report.duplicates,
        f", late {report.late_records}" if spec.event_column else "",
    )
    return report


def _spark_publish(lake: Lake, spec: SourceSpec, month: str, checked: DataFrame, good_count: int) -> Publish:
    def publish(check: Callable[[DataFrame], Any]) -> WriteResult:
        source = spec.name
        good = checked.where(F.size(REASONS_COL) == 0).drop(REASONS_COL, RAW_COL)
        with _phase(source, month, "dedupe"):
            deduped = _add_partition_columns(dedupe_repeated(good, list(spec.keys)), spec, month)
        deduped = drop_loaded_elsewhere(lake, deduped, spec, month)
        with _phase(source, month, "silver"):
            return _write_silver(lake, spec, month, deduped, good_count, check)

    return publish


def _add_partition_columns(
    df: DataFrame, spec: SourceSpec, month: str, *, keep_place: bool = False
) -> DataFrame:
    if not keep_place:
        df = df.drop("_fid", "_block", "_pid", "_pos")
    if spec.event_column:
        assert spec.event_month_column is not None
        df = df.withColumn(spec.event_month_column, F.date_format(spec.event_column, "yyyy-MM"))
    if spec.delivery_column:
        df = df.withColumn(spec.delivery_column, F.lit(month))
    return df


ROWS_PER_FILE = 1_000_000


def _write_silver(
    lake: Lake,
    spec: SourceSpec,
    month: str,
    df: DataFrame,
    rows: int,
    check: Callable[[DataFrame], Any],
) -> WriteResult:
    # few, large files: about a million rows per task, never more tasks than the cluster runs at once
    tasks = max(1, min(lake.spark.sparkContext.defaultParallelism, -(-rows // ROWS_PER_FILE)))
    return lake.write(
        df.coalesce(tasks).select(*spec.silver_columns()),
        spec.name,
        mode="overwrite",
        partition_by=list(spec.partition_by),
        replace_partitions=spec.replaced_partitions(month),
        before_commit=check,
    )
