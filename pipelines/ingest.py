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

import contextvars
import csv
import dataclasses
import datetime as dt
import io
import json
import logging
import mmap
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from isal import igzip
from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features import contract as C
from features.calendar import add_months, month_start, months_between
from features.cleaning import (
    DECIMAL,
    MALFORMED_COL,
    RAW_COL,
    REASONS_COL,
    compute_msisdn_intervals,
    resolve_msisdn,
    validate_rows,
)
from features.errors import MissingColumnsError
from pipelines.core.config import Config
from pipelines.core.delta import WriteResult
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.runner import one_line
from pipelines.ingest_spec import (
    INGEST_ORDER,
    SOURCE_SPECS,
    LoadStats,
    SourceSpec,
    evaluate_gates,
    trailing_daily_mean,
)

log = logging.getLogger(__name__)


class IncompleteDeliveryError(RuntimeError):
    """A month folder without ``_SUCCESS`` (pass ``--allow-incomplete`` to load it anyway)."""


class UnreadableFileError(RuntimeError):
    """A file in a month folder that is not CSV/CSV.gz/Parquet or cannot be read."""


class MissingDeliveryError(RuntimeError):
    """A required source has no folder for the month."""


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


@dataclass(frozen=True)
class LandingFile:
    path: str
    name: str
    fmt: str  # csv | parquet
    columns: tuple[str, ...]
    mtime: float = 0.0
    size: int = 0  # bytes on disk
    multiline: bool = False  # CSV: holds a quoted line break, or gzip (parsed whole, not split)
    types: tuple[tuple[str, str], ...] = ()  # Parquet: (contract column, Arrow type) as written


def _contract_types(schema: pa.Schema, source: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, str(schema.field(name).type)) for name in C.columns(source))


# -------------------------------------------------------------------------------- delivery checks
def _header(path: Path) -> list[str]:
    opener = igzip.open if path.name.endswith(".gz") else open
    try:
        # only the header line is decoded here: a bad byte further down is a bad row, not a bad file;
        # utf-8-sig: a byte-order mark before the first column name is not part of the name
        with opener(path, "rb") as handle:
            line = handle.readline().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise UnreadableFileError(f"{path}: cannot be read as UTF-8 CSV ({exc})") from None
    if not line.strip():
        raise UnreadableFileError(f"{path}: empty file (no header row)")
    return [h.strip() for h in next(csv.reader(io.StringIO(line)))]


def _check_gzip(path: Path) -> None:
    """Decompress the whole file once: a truncated or corrupt gzip fails here with one clear line."""
    try:
        with igzip.open(path, "rb") as handle:
            while handle.read(1 << 24):
                pass
    except (OSError, EOFError, ValueError) as exc:
        raise UnreadableFileError(f"{path}: truncated or corrupt gzip ({exc})") from None


def _has_quoted_line_break(path: Path) -> bool:
    """Whether a CSV file holds a quoted field with a line break (needs the whole-record parser).

    A gzip file is read whole by one task anyway. A plain file stays splittable unless one of its
    lines ends inside quotes: quotes open and close in pairs (an escaped quote is two), so a line
    break inside a quoted field is one preceded by an odd number of quote characters. A quoted
    header or fully quoted fields (as many exporters write them) leave the file splittable.
    """
    if path.name.endswith(".gz"):
        return True
    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        body = data.find(b"\n") + 1
        if body == 0 or data.find(b'"', body) < 0:
            return False
        return _odd_quotes_at_a_line_break(np.frombuffer(data, dtype=np.uint8))


_CHUNK = 1 << 26


def _odd_quotes_at_a_line_break(data: np.ndarray) -> bool:
    """Whether any line feed in ``data`` follows an odd number of quote characters (chunked, vectorised)."""
    parity = 0
    for start in range(0, len(data), _CHUNK):
        chunk = data[start : start + _CHUNK]
        # a uint8 running count wraps at 256, which keeps its parity
        quotes = np.cumsum(chunk == ord('"'), dtype=np.uint8)
        quotes += parity
        if (quotes[chunk == ord("\n")] & 1).any():
            return True
        parity = int(quotes[-1]) & 1
    return False


def _check_parquet_types(path: Path, schema: pa.Schema, source: str) -> None:
    """A contract column of a type no contract kind can come from fails the file, naming the column."""
    for name in C.columns(source):
        if name not in schema.names:
            continue
        kind = schema.field(name).type
        if pa.types.is_nested(kind) or pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            raise UnreadableFileError(f"{path}: column {name} has type {kind}, not a contract type")


def list_delivery(folder: Path, source: str, *, allow_incomplete: bool) -> tuple[list[LandingFile], bool]:
    """Check a month folder and every file's columns.

    Returns the files in delivery order (modification time, then name) and whether it was incomplete.
    """
    incomplete = not (folder / C.SUCCESS_MARKER).exists()
    if incomplete and not allow_incomplete:
        raise IncompleteDeliveryError(
            f"{folder}: no {C.SUCCESS_MARKER} marker, the delivery is incomplete "
            "(use --allow-incomplete to load it)"
        )
    required = set(C.columns(source))
    files = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")) or path.is_dir():
            continue
        if not path.name.endswith(C.DATA_SUFFIXES):
            raise UnreadableFileError(f"{path}: not a CSV, CSV.gz or Parquet file")
        schema = None
        multiline = False
        if path.name.endswith(".parquet"):
            try:
                schema = pq.read_schema(path)
            except Exception as exc:
                raise UnreadableFileError(f"{path}: not a readable Parquet file ({exc})") from None
            cols = schema.names
            fmt = "parquet"
        else:
            cols = _header(path)
            fmt = "csv"
            if path.name.endswith(".gz"):
                _check_gzip(path)
            multiline = _has_quoted_line_break(path)
        repeated = sorted({c for c in cols if cols.count(c) > 1})
        if repeated:
            raise UnreadableFileError(f"{path}: column {', '.join(repeated)} appears twice in the header")
        missing = sorted(required - set(cols))
        if missing:
            raise MissingColumnsError(missing, f"{path}")
        if schema is not None:
            _check_parquet_types(path, schema, source)
        st = path.stat()
        files.append(
            LandingFile(
                str(path),
                path.name,
                fmt,
                tuple(cols),
                st.st_mtime,
                st.st_size,
                multiline=multiline,
                types=_contract_types(schema, source) if schema is not None else (),
            )
        )
    if not files:
        raise UnreadableFileError(f"{folder}: no data files")
    # in delivery order: a later file's copy of a record wins
    return sorted(files, key=lambda f: (f.mtime, f.name)), incomplete


def read_delivery(
    spark: SparkSession, files: Sequence[LandingFile], source: str, *, local_timezone: str = "UTC"
) -> DataFrame:
    """All files as text columns of the contract, with the file's index in ``files`` and row position.

    ``_fid`` (the index: a small int instead of a file name on every row), ``_block`` (the Spark split's
    byte offset), ``_pid`` and ``_pos`` (position within the Spark partition) locate each row;
    ``_malformed`` marks a CSV record whose field count differs from its header.

    CSV files are read with their own header's columns (any order, extra columns ignored); files that
    hold a quoted line break are parsed record by record. Parquet files are read per physical schema,
    each column turned into the contract's text form (see :func:`parquet_as_contract_text`), so files
    written by different tools (pandas, pyarrow, Spark, Polars, DuckDB) mix in one month.
    """
    wanted = C.columns(source)
    fid = F.array_position(_file_names(files), F.col("_metadata.file_name")).cast("int") - 1
    groups: dict[tuple, list[str]] = {}
    for f in files:
        key = (f.fmt, f.columns, f.multiline) if f.fmt == "csv" else (f.fmt, f.types)
        groups.setdefault(key, []).append(f.path)
    frames = []
    for key, paths in groups.items():
        if key[0] == "csv":
            _, cols, multiline = key
            schema = T.StructType([T.StructField(c, T.StringType()) for c in (*cols, CORRUPT_COL)])
            df = spark.read.csv(
                paths,
                schema=schema,
                header=True,
                enforceSchema=True,
                mode="PERMISSIVE",
                columnNameOfCorruptRecord=CORRUPT_COL,
                multiLine=multiline,
                quote='"',
                escape='"',
            )
            malformed = F.col(CORRUPT_COL).isNotNull()
            texts = [F.col(c) for c in wanted]
            if multiline:
                # the parser turns a quoted CRLF into LF in CRLF files only: one rule for every file
                texts = [F.replace(F.col(c), F.lit("\r\n"), F.lit("\n")).alias(c) for c in wanted]
        else:
            types = dict(key[1])
            df = spark.read.parquet(*paths)
            malformed = F.lit(False)
            texts = [
                parquet_as_contract_text(
                    c.name,
                    types[c.name],
                    c.kind,
                    epoch_nanos=isinstance(df.schema[c.name].dataType, T.LongType),
                    local_timezone=local_timezone,
                )
                for c in C.CONTRACT[source]
            ]
        df = df.select(
            *texts,
            malformed.alias(MALFORMED_COL),
            fid.alias("_fid"),
            F.col("_metadata.file_block_start").alias("_block"),
            F.spark_partition_id().alias("_pid"),
            F.monotonically_increasing_id().alias("_mid"),
        )
        frames.append(df)
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    # position within the Spark partition (monotonically_increasing_id = partition << 33 | index)
    return out.withColumn("_pos", F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), 33)).drop("_mid")


CORRUPT_COL = "_corrupt_record"
TIMESTAMP_TEXT = "yyyy-MM-dd HH:mm:ss"


def parquet_as_contract_text(
    name: str, arrow_type: str, kind: str, *, epoch_nanos: bool, local_timezone: str
) -> Column:
    """One Parquet column as the contract's text, whatever natural physical type a writer chose.

    The text then goes through the same validation as CSV, so a value that cannot be represented
    (fractional where an integer is required, out of range, a time on a date) is quarantined with a
    reason, never silently rounded or dropped. Timestamps: nanoseconds (read as epoch longs),
    micro/milliseconds and INT96 alike, cut to seconds like CSV; a timestamp **with a zone** is an
    instant and becomes the wall-clock time in ``local_timezone`` (the contract's local time); one
    without a zone is taken as the local wall-clock time it already is.
    """
    col = F.col(f"`{name}`")
    if arrow_type == "null":  # an all-null column: no values to read
        return F.lit(None).cast("string").alias(name)
    is_time = arrow_type.startswith("timestamp[")
    if is_time:
        if epoch_nanos:  # nanosecond timestamps Spark reads as epoch longs
            col = F.timestamp_micros(F.floor(col / 1000).cast("long"))
        if ", tz=" in arrow_type:
            col = F.from_utc_timestamp(col, local_timezone)
        full = F.date_format(col, TIMESTAMP_TEXT)
        if kind == "date":  # a date delivered as a timestamp: fine at midnight, else not a date
            midnight = F.date_format(col, "HH:mm:ss") == "00:00:00"
            return F.when(midnight, F.date_format(col, "yyyy-MM-dd")).otherwise(full).alias(name)
        return full.alias(name)
    numeric = arrow_type.startswith(("double", "float", "halffloat", "decimal"))
    if kind in ("int", "bigint") and numeric:
        whole = col == F.floor(col)
        as_text = col.cast("string")
        return F.when(whole, col.cast("decimal(38,0)").cast("string")).otherwise(as_text).alias(name)
    if kind == "decimal" and arrow_type.startswith(("double", "float", "halffloat")):
        # through a decimal: no exponent notation; a value no decimal holds keeps its text (unparseable)
        return F.coalesce(col.cast(DECIMAL).cast("string"), col.cast("string")).alias(name)
    return col.cast("string").alias(name)


def _file_names(files: Sequence[LandingFile]) -> Column:
    """The files' names as an array literal: ``_fid`` indexes it."""
    return F.array(*[F.lit(f.name) for f in files])


# --------------------------------------------------------------------------------------- ingest
def _msisdn_intervals(lake: Lake, month: str) -> DataFrame:
    """Who held each number when: from the subscription snapshots loaded up to ``month``."""
    loaded = [m for (m,) in lake.partition_values("subscriptions", "month") if m <= month]
    latest = max(loaded, default=month)
    damaged = None
    if lake.exists("quarantine"):
        raw = F.col("raw_values")
        damaged = (
            lake.read("quarantine")
            .where(F.col("source") == "subscriptions")
            .select(
                F.get_json_object(raw, "$.subscriber_id").alias("subscriber_id"),
                F.get_json_object(raw, "$.msisdn").alias("msisdn"),
                "month",
            )
        )
    return compute_msisdn_intervals(lake.read("subscriptions"), latest_month=latest, damaged_listings=damaged)


def _trailing_daily_mean(lake: Lake, source: str, month: str, n: int, late_days: int) -> float | None:
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


CACHE_COMPRESSED = "spark.sql.inMemoryColumnarStorage.compressed"


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
    spark = lake.spark
    spec = SOURCE_SPECS[source]
    folder = Path(cfg.landing_root) / source / f"month={month}"
    if not folder.exists():
        if spec.optional:
            log.info("%s %s: no delivery (optional source)", source, month)
            return None
        raise MissingDeliveryError(f"{folder}: no delivery for {source} {month}")
    try:
        files, incomplete = list_delivery(folder, source, allow_incomplete=allow_incomplete)
    except (UnreadableFileError, MissingColumnsError) as exc:
        failed = SourceReport(source, month, gate_failures=[one_line(exc)])
        _write_quality(lake, failed)
        raise
    report = SourceReport(source, month, files=len(files), incomplete_delivery=incomplete)
    report.extra_columns = {
        f.name: sorted(set(f.columns) - set(C.columns(source)))
        for f in files
        if set(f.columns) - set(C.columns(source))
    }
    raw = read_delivery(spark, files, source, local_timezone=cfg.ingest.local_timezone)
    checked = validate_rows(raw, source=source, month=month, late_days=cfg.ingest.late_days)
    intervals = None
    if spec.resolves_subscriber:
        # read twice (the conflict count, then the broadcast join): built once from the snapshots
        intervals = _msisdn_intervals(lake, add_months(month, 1)).persist(StorageLevel.MEMORY_AND_DISK)
        conflicts = intervals.where("conflict").agg(
            F.count("*").alias("n"), F.slice(F.sort_array(F.collect_set("msisdn")), 1, 5).alias("some")
        )
        found = conflicts.first()
        report.msisdn_conflicts = int(found.n)
        if found.n:
            log.warning(
                "cdr %s: %d number(s) claimed by two subscribers at once in the snapshots (the later "
                "activation owns the events): %s",
                month,
                found.n,
                ", ".join(found.some),
            )
        checked = _with_subscriber(checked, intervals)
    # the checked rows are read three times (statistics, duplicates, silver write) and live only for this
    # source: cached uncompressed in memory while the delivery is small enough, else on local disk
    checked = _cache_checked(spark, checked, files, cfg.ingest.memory_cache_max_mb)
    try:
        return _finish_source(lake, spec, report, checked, files, override_gates)
    except (GateFailedError, UnreadableFileError):
        raise
    except Exception as exc:
        unreadable = _unreadable_file(exc, files)
        if unreadable is None:
            raise
        report.gate_failures = [str(unreadable)]
        _write_quality(lake, report)
        raise unreadable from None
    finally:
        checked.unpersist()
        if intervals is not None:
            intervals.unpersist()


_CACHE_LOCK = threading.Lock()


# landing bytes on disk -> rows as text: gzip and Parquet hold about 5x and 4x their size
_TEXT_FACTOR = {"csv": 1.0, "csv.gz": 5.0, "parquet": 4.0}


def delivery_text_mb(files: Sequence[LandingFile]) -> float:
    """The delivery's size as CSV text, estimated from its files' sizes (MB)."""
    kinds = ("csv.gz" if f.name.endswith(".gz") else f.fmt for f in files)
    return sum(f.size * _TEXT_FACTOR.get(kind, 1.0) for f, kind in zip(files, kinds, strict=True)) / 2**20


def _cache_checked(
    spark: SparkSession, df: DataFrame, files: Sequence[LandingFile], memory_max_mb: int
) -> DataFrame:
    """``df`` cached uncompressed in memory (a third faster to build than compressed) when the delivery
    holds at most ``memory_max_mb`` of text, else on local disk: measured on one CDR month of 9.4M rows
    (1.2 GB of CSV) with a 6 GB heap, the memory cache ran the heap out (out-of-memory traces, tasks
    retried) while the disk cache took the same 59 s; at 4.7M rows memory was 10 % faster."""
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


def _unreadable_file(exc: Exception, files: Sequence[LandingFile]) -> UnreadableFileError | None:
    """A Spark read failure that names a landing file, as one line naming the file and the cause."""
    text = str(exc)
    hit = next((f for f in files if f.name in text), None)
    if hit is None:
        return None
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
    cause = causes[-1].removeprefix("Caused by:").strip() if causes else one_line(exc)
    return UnreadableFileError(f"{hit.path}: cannot be read ({cause[:300]})")


def _with_subscriber(validated: DataFrame, intervals: DataFrame) -> DataFrame:
    """Resolve CDR numbers as of event time; a good row whose number belongs to nobody is quarantined."""
    resolved = resolve_msisdn(validated, intervals)
    unknown = (F.size(REASONS_COL) == 0) & F.col("subscriber_id").isNull()
    # the row parsed cleanly, so its raw values are its typed values as text
    as_text = F.struct(*[F.col(c).cast("string").alias(c) for c in C.columns("cdr")])
    return resolved.withColumns(
        {
            REASONS_COL: F.when(unknown, F.array(F.lit(C.UNKNOWN_MSISDN))).otherwise(F.col(REASONS_COL)),
            RAW_COL: F.when(unknown, as_text).otherwise(F.col(RAW_COL)),
        }
    )


def _block_stats(checked: DataFrame) -> tuple[dict[str, int], int, DataFrame | None]:
    """One pass: rows per first reason (good rows: None) and, per file block, its first position and size.

    Returns the quarantine counts by reason, the good-row count and, when any row was rejected, the
    blocks with their row offset in the file (for row numbers: a tiny frame, broadcast).
    """
    rows = (
        checked.groupBy("_fid", "_block", "_pid", F.col(REASONS_COL)[0].alias("reason"))
        .agg(F.min("_pos").alias("_first"), F.count("*").alias("_n"))
        .collect()
    )
    by_reason: dict[str, int] = {}
    good = 0
    blocks: dict[tuple[int, int, int], list[int]] = {}
    for r in rows:
        if r.reason is None:
            good += r._n
        else:
            by_reason[r.reason] = by_reason.get(r.reason, 0) + r._n
        block = blocks.setdefault((r._fid, r._block, r._pid), [r._first, 0])
        block[0] = min(block[0], r._first)
        block[1] += r._n
    if not by_reason:
        return by_reason, good, None
    offsets = []
    running: dict[int, int] = {}  # rows of the file before the block
    for (fid, block, pid), (first, n) in sorted(blocks.items()):
        offsets.append((fid, block, pid, first, running.get(fid, 0)))
        running[fid] = running.get(fid, 0) + n
    frame = checked.sparkSession.createDataFrame(
        offsets, "_fid int, _block long, _pid int, _first long, _offset long"
    )
    return by_reason, good, frame


MAX_REPEATED = 200_000  # repeated keys collected and broadcast; beyond that, joined by a shuffle


def _dedupe_repeated(good: DataFrame, keys: list[str]) -> DataFrame:
    """Keep the last delivered copy of each key (latest file, then last row in it), in one pass.

    One aggregation finds the keys that repeat and, for each, the position of its last delivered copy;
    every other copy of those keys is filtered out. Usually few: collected and broadcast.
    """
    position = F.struct("_fid", "_block", "_pos")
    repeated = (
        good.groupBy(*keys)
        .agg(F.count("*").alias("_n"), F.max(position).alias("_keep"))
        .where(F.col("_n") > 1)
        .select(*keys, "_keep")
    )
    found = repeated.limit(MAX_REPEATED + 1).collect()
    if not found:
        return good
    if len(found) <= MAX_REPEATED:
        repeated = F.broadcast(good.sparkSession.createDataFrame(found, repeated.schema))
    joined = good.join(repeated, keys, "left")
    return joined.where(F.col("_keep").isNull() | (position == F.col("_keep"))).drop("_keep")


def _drop_loaded_elsewhere(lake: Lake, df: DataFrame, spec: SourceSpec, month: str) -> DataFrame:
    """Rows already loaded from another month's delivery are duplicates, not new rows.

    CDRs: only late records (event month M-1, against M-1's own delivery, within the late window) and,
    when M+1 was loaded first, records of M it delivered late can repeat; everything else passes without
    a join. Care contacts: against every other delivery (small).
    """
    keys, source = list(spec.keys), spec.name
    if spec.cross_delivery == "none" or not lake.exists(source):
        return df
    if spec.cross_delivery == "all_deliveries":
        existing = lake.read(source).where(F.col(spec.partition_by[0]) != month).select(*keys)
        return df.join(existing, keys, "left_anti")
    assert spec.event_column and spec.delivery_column and spec.event_month_column
    event_month, delivery_month = F.col(spec.event_month_column), F.col(spec.delivery_column)
    previous = add_months(month, -1)
    held = lake.partition_values(source, spec.event_month_column, spec.delivery_column)
    late_zone = dt.datetime.combine(
        month_start(month) - dt.timedelta(days=lake.cfg.ingest.late_days), dt.time()
    )
    late = df.where(event_month < month)
    current = df.where(event_month >= month)
    if (previous, previous) in held:
        loaded = (
            lake.read(source)
            .where(
                (event_month == previous)
                & (delivery_month != month)
                & (F.col(spec.event_column) >= F.lit(late_zone))
            )
            .select(*keys)
        )
        late = late.join(loaded, keys, "left_anti")
    if any(e == month and d not in (None, month) for e, d in held):
        loaded = lake.read(source).where((event_month == month) & (delivery_month != month))
        current = current.join(loaded.select(*keys), keys, "left_anti")
    return late.unionByName(current)


def _finish_source(
    lake: Lake,
    spec: SourceSpec,
    report: SourceReport,
    checked: DataFrame,
    files: Sequence[LandingFile],
    override_gates: bool,
) -> SourceReport:
    source, month, cfg = spec.name, report.month, lake.cfg
    quarantine_by_reason, good_count, blocks = _block_stats(checked)
    rows_quarantined = sum(quarantine_by_reason.values())
    good = checked.where(F.size(REASONS_COL) == 0).drop(REASONS_COL, RAW_COL)
    deduped = _add_partition_columns(_dedupe_repeated(good, list(spec.keys)), spec, month)
    deduped = _drop_loaded_elsewhere(lake, deduped, spec, month)
    trailing = None
    if spec.event_column:
        gates = cfg.ingest.gates
        trailing = _trailing_daily_mean(lake, source, month, gates.cdr_trailing_months, cfg.ingest.late_days)

    def check(staged: DataFrame) -> tuple[LoadStats, list[str]]:
        """Load statistics and gates from the staged silver files; a failed gate stops the commit."""
        stats = _load_stats(staged, spec, good_count + rows_quarantined, rows_quarantined)
        failures = evaluate_gates(
            stats,
            spec=spec,
            month=month,
            gates=cfg.ingest.gates,
            late_days=cfg.ingest.late_days,
            trailing_mean=trailing,
        )
        if failures and not override_gates:
            raise GateFailedError(
                f"{source} {month}: data-quality gate failed, month not publishable: "
                + "; ".join(failures)
                + " (override with --override-gates)",
                stats=stats,
                failures=failures,
            )
        return stats, failures

    report = dataclasses.replace(report, quarantine_by_reason=quarantine_by_reason)
    try:
        stats, failures = _write_silver(lake, spec, month, deduped, good_count, check).checked
    except GateFailedError as exc:
        report = _with_stats(report, spec, exc.stats, exc.failures, overridden=False)
        _write_quality(lake, report)
        raise
    report = _with_stats(report, spec, stats, failures, overridden=bool(failures))
    if blocks is None:  # nothing rejected: no need to scan the rows again
        bad = checked.where(F.lit(False)).withColumn("row_number", F.lit(None).cast("long"))
    else:
        bad = (
            checked.where(F.size(REASONS_COL) > 0)
            .join(F.broadcast(blocks), ["_fid", "_block", "_pid"])
            .withColumn("row_number", F.col("_offset") + F.col("_pos") - F.col("_first") + 1)
        )
    quarantine = bad.select(
        F.lit(source).alias("source"),
        F.lit(month).alias("month"),
        _file_names(files)[F.col("_fid")].alias("file"),
        F.col("row_number").cast("long"),
        F.col(REASONS_COL)[0].alias("reason"),
        F.array_join(REASONS_COL, ",").alias("reasons"),
        F.to_json(RAW_COL).alias("raw_values"),
    )
    lake.replace(quarantine, "quarantine", {"source": [source], "month": [month]})
    _write_quality(lake, report)
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


def _with_stats(
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


def _write_quality(lake: Lake, report: SourceReport) -> None:
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


def _load_stats(loaded: DataFrame, spec: SourceSpec, rows_read: int, rows_quarantined: int) -> LoadStats:
    """Rows, approximate distinct subscribers, (event sources) rows per event day and (unique-live
    sources) values held by several live rows, of the staged load."""
    shared: list[str] = []
    if spec.unique_live_column:
        col = spec.unique_live_column
        shared = [
            r[col]
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


def _add_partition_columns(df: DataFrame, spec: SourceSpec, month: str) -> DataFrame:
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
