"""Reading a checked delivery into text rows of the contract, and locating the rows validation rejects.

Every file becomes the contract's columns as text (CSV as written, Parquet turned into the same text), so
one validation (``features.cleaning``) judges every format alike. Each row keeps where it came from
(file, Spark split, position), so a quarantined row is reported with its file and row number.
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from features import contract as C
from features.cleaning import DECIMAL, MALFORMED_COL, RAW_COL, REASONS_COL
from pipelines.core.privacy import with_masked_fields
from pipelines.core.runner import one_line
from pipelines.ingest.files import LandingFile, UnreadableFileError

CORRUPT_COL = "_corrupt_record"
TIMESTAMP_TEXT = "yyyy-MM-dd HH:mm:ss"


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
    fid = F.array_position(file_names(files), F.col("_metadata.file_name")).cast("int") - 1
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
    if not frames:  # a delivery of no files (an optional source's empty month): no rows
        return spark.createDataFrame([], _text_schema(wanted))
    out = frames[0]
    for df in frames[1:]:
        out = out.unionByName(df)
    # position within the Spark partition (monotonically_increasing_id = partition << 33 | index)
    return out.withColumn("_pos", F.col("_mid") - F.shiftleft(F.col("_pid").cast("long"), 33)).drop("_mid")


def _text_schema(columns: Sequence[str]) -> T.StructType:
    """The schema of :func:`read_delivery`'s rows."""
    fields = [T.StructField(c, T.StringType()) for c in columns]
    place = [(MALFORMED_COL, T.BooleanType()), ("_fid", T.IntegerType()), ("_block", T.LongType()),
             ("_pid", T.IntegerType()), ("_pos", T.LongType())]  # fmt: skip
    return T.StructType(fields + [T.StructField(name, kind) for name, kind in place])


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


def file_names(files: Sequence[LandingFile]) -> Column:
    """The files' names as an array literal: ``_fid`` indexes it."""
    return F.array(*[F.lit(f.name) for f in files]).cast("array<string>")


def unreadable_file(exc: Exception, files: Sequence[LandingFile]) -> UnreadableFileError | None:
    """A Spark read failure that names a landing file, as one line naming the file and the cause."""
    text = str(exc)
    hit = next((f for f in files if f.name in text), None)
    if hit is None:
        return None
    causes = [line.strip() for line in text.splitlines() if line.strip().startswith("Caused by:")]
    cause = causes[-1].removeprefix("Caused by:").strip() if causes else one_line(exc)
    return UnreadableFileError(f"{hit.path}: cannot be read ({cause[:300]})")


def block_stats(checked: DataFrame) -> tuple[dict[str, int], int, DataFrame | None]:
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


def quarantine_rows(
    checked: DataFrame,
    blocks: DataFrame | None,
    files: Sequence[LandingFile],
    *,
    source: str,
    month: str,
    masked: Sequence[str] = (),
) -> DataFrame:
    """The rejected rows as ``quarantine`` rows: file, row number in it, first and all reasons, raw values.

    ``blocks`` comes from :func:`block_stats`; None (nothing rejected) gives no rows without a scan.
    ``masked``: raw values kept masked (phone numbers: ``pipelines.core.privacy.mask_number``).
    """
    if blocks is None:
        bad = checked.where(F.lit(False)).withColumn("row_number", F.lit(None).cast("long"))
    else:
        bad = (
            checked.where(F.size(REASONS_COL) > 0)
            .join(F.broadcast(blocks), ["_fid", "_block", "_pid"])
            .withColumn("row_number", F.col("_offset") + F.col("_pos") - F.col("_first") + 1)
        )
    return bad.select(
        F.lit(source).alias("source"),
        F.lit(month).alias("month"),
        file_names(files)[F.col("_fid")].alias("file"),
        F.col("row_number").cast("long"),
        F.col(REASONS_COL)[0].alias("reason"),
        F.array_join(REASONS_COL, ",").alias("reasons"),
        F.to_json(with_masked_fields(F.col(RAW_COL), tuple(masked))).alias("raw_values"),
    )
