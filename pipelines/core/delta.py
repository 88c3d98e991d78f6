"""The Delta table layer: one API, two engines, one format.

*Bridge* (no Delta jars, the default here): Spark executors write the Parquet files into a staging folder
inside the table; the driver moves them to their partition folders and commits them in **one** atomic
Delta transaction with delta-rs (add actions with partition values and per-file statistics; for
overwrites the remove actions are derived by delta-rs from the partitions replaced). Nothing is visible
before the commit: a failed or killed job leaves the table at its previous version, and its stray files
are removed by :func:`vacuum`.

*Native*: where the ``io.delta`` classes are on the classpath, the same calls use Spark's
``format("delta")``.

Reads resolve the snapshot (optionally an older ``version``) with delta-rs and give Spark the file list,
restoring the partition columns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import decimal
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from features.errors import MissingColumnsError, SchemaMismatchError
from pipelines.core.arrow import arrow_decimals_as_double

log = logging.getLogger(__name__)

STAGING_DIR = "_staging"
WriteMode = Literal["append", "overwrite"]
Engine = Literal["auto", "bridge", "native"]

# Hive-style escaping used by Spark for partition folder names.
_HIVE_SAFE = "".join(chr(c) for c in range(32, 127) if chr(c) not in "\"#%'*/:=?\\\x7f{[]^")
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


class UnsupportedTableError(RuntimeError):
    """The table uses a Delta feature the bridge cannot read (deletion vectors, column mapping)."""


@dataclass(frozen=True)
class WriteResult:
    """What a commit did: the new table version, files and rows added."""

    version: int
    files_added: int
    rows_added: int
    checked: Any = None  # what ``before_commit`` returned (its checks' findings)


# --------------------------------------------------------------------------------------------- engine
_NATIVE: dict[str, bool] = {}  # by Spark application: the classpath does not change while it runs


def native_delta_available(spark: SparkSession) -> bool:
    """True when the ``io.delta`` Spark classes are on the driver's classpath."""
    app = spark.sparkContext.applicationId
    if app not in _NATIVE:
        try:
            jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
            loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
            jvm.java.lang.Class.forName("io.delta.tables.DeltaTable", False, loader)
            _NATIVE[app] = True
        except Exception:
            _NATIVE[app] = False
    return _NATIVE[app]


def resolve_engine(spark: SparkSession, engine: Engine) -> Literal["bridge", "native"]:
    if engine == "bridge":
        return "bridge"
    available = native_delta_available(spark)
    if engine == "native" and not available:
        raise RuntimeError("lake.engine=native but the io.delta classes are not on the Spark classpath")
    return "native" if available else "bridge"


# ------------------------------------------------------------------------------------------- helpers
def _fs(path: str) -> tuple[pafs.FileSystem, str]:
    return pafs.FileSystem.from_uri(path if "://" in path else f"file://{path}")


@contextlib.contextmanager
def scratch_folder(path: str, prefix: str) -> Iterator[str]:
    """A fresh folder in the staging area of the table at ``path`` (a path or URI, as ``path`` is), removed
    with what it holds when the block ends; a killed run's is removed by :func:`vacuum`, like a failed
    write's."""
    name = f"{STAGING_DIR}/{prefix}-{uuid.uuid4().hex}"
    fs, folder = _fs(f"{path.rstrip('/')}/{name}")
    try:
        yield f"{path.rstrip('/')}/{name}"
    finally:
        if fs.get_file_info(folder).type == pafs.FileType.Directory:
            fs.delete_dir(folder)


def table_exists(path: str) -> bool:
    return DeltaTable.is_deltatable(path)


def table_version(path: str) -> int | None:
    """Current version of the table at ``path``, or None when there is no table."""
    if not table_exists(path):
        return None
    return DeltaTable(path).version()


def table_history(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Commit history, newest first (version, timestamp, operation, parameters, custom metadata)."""
    return DeltaTable(path).history(limit)


def spark_schema_of(path: str, version: int | None = None) -> T.StructType:
    arrow = pa.schema(DeltaTable(path, version=version).schema().to_arrow())
    return from_arrow_schema(arrow)


def partition_columns_of(path: str) -> list[str]:
    return list(DeltaTable(path).metadata().partition_columns)


def partition_values(path: str, columns: Sequence[str]) -> set[tuple[str | None, ...]]:
    """Distinct partition values (as strings) of the live files: what a table holds, without a Spark job."""
    if not table_exists(path):
        return set()
    actions = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()
    return {tuple(_partition_value_str(a.get(f"partition.{c}")) for c in columns) for a in actions}


def _arrow_schema(schema: T.StructType) -> pa.Schema:
    return to_arrow_schema(schema, timezone="UTC")


def _partition_value_str(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _hive_dir(partition_values: Mapping[str, str | None]) -> str:
    parts = []
    for key, value in partition_values.items():
        text = _HIVE_NULL if value is None else quote(value, safe=_HIVE_SAFE)
        parts.append(f"{key}={text}")
    return "/".join(parts)


# ---------------------------------------------------------------------------------- schema checks
def _types_equal(a: T.DataType, b: T.DataType) -> bool:
    return a.simpleString() == b.simpleString()


def check_schema(
    df_schema: T.StructType,
    table_schema: T.StructType,
    *,
    table: str,
    merge_schema: bool = False,
) -> T.StructType:
    """Check data against the table schema; return the schema to write (table order, then new columns).

    Missing columns raise :class:`MissingColumnsError`; type changes and (unless ``merge_schema``) new
    columns raise :class:`SchemaMismatchError`, naming each column.
    """
    incoming = {f.name: f for f in df_schema.fields}
    missing = [f.name for f in table_schema.fields if f.name not in incoming]
    if missing:
        raise MissingColumnsError(missing, f"write to {table}")
    mistyped = [
        f"{f.name} (table {f.dataType.simpleString()}, data {incoming[f.name].dataType.simpleString()})"
        for f in table_schema.fields
        if not _types_equal(f.dataType, incoming[f.name].dataType)
    ]
    if mistyped:
        raise SchemaMismatchError(f"write to {table}: column types differ: {', '.join(mistyped)}")
    known = {f.name for f in table_schema.fields}
    extra = [f for f in df_schema.fields if f.name not in known]
    if extra and not merge_schema:
        names = ", ".join(f.name for f in extra)
        raise SchemaMismatchError(f"write to {table}: new columns {names} (pass merge_schema=True to add)")
    fields = [T.StructField(f.name, f.dataType, True) for f in table_schema.fields]
    fields += [T.StructField(f.name, f.dataType, True) for f in extra]
    return T.StructType(fields)


# ------------------------------------------------------------------------------------- statistics
def _stat_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, bytes):
        return None
    return value


def file_stats(fs: pafs.FileSystem, path: str, schema: T.StructType) -> tuple[int, str]:
    """(numRecords, Delta stats JSON) from a Parquet footer: min/max/nullCount per top-level column."""
    meta = pq.read_metadata(path, filesystem=fs)
    kinds = {f.name: f.dataType for f in schema.fields}
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    for j, name in enumerate(names):
        kind = kinds.get(name)
        if kind is None or "." in name:
            continue
        lo = hi = None
        null_count = 0
        complete = meta.num_row_groups > 0
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is None:
                complete = False
                break
            null_count += stats.null_count if stats.has_null_count else 0
            if stats.has_min_max:
                lo = stats.min if lo is None else min(lo, stats.min)
                hi = stats.max if hi is None else max(hi, stats.max)
        if not complete:
            continue
        nulls[name] = int(null_count)
        if lo is None or isinstance(kind, T.BooleanType | T.BinaryType):
            continue
        if isinstance(kind, T.StringType) and (len(lo) > 32 or len(hi) > 32):
            lo, hi = lo[:32], None  # a truncated max would be wrong for pruning: leave it out
        mins[name] = _stat_value(lo)
        if hi is not None:
            maxs[name] = _stat_value(hi)
    stats_json = {
        "numRecords": meta.num_rows,
        "minValues": {k: v for k, v in mins.items() if v is not None},
        "maxValues": {k: v for k, v in maxs.items() if v is not None},
        "nullCount": nulls,
    }
    return meta.num_rows, json.dumps(stats_json)


# ------------------------------------------------------------------------------------------- read
def read_delta(
    spark: SparkSession, path: str, *, version: int | None = None, engine: Engine = "auto"
) -> DataFrame:
    """Read the Delta table at ``path`` (its current or an older ``version``) as a Spark DataFrame."""
    if resolve_engine(spark, engine) == "native":
        reader = spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(path)
    if not table_exists(path):
        raise FileNotFoundError(f"no Delta table at {path}")
    table = _readable_table(path, version)
    schema = from_arrow_schema(pa.schema(table.schema().to_arrow()))
    part_cols = list(table.metadata().partition_columns)
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    if not actions:
        return spark.createDataFrame([], schema)
    root = path.rstrip("/")
    files = [_file_path(path, a) for a in actions]
    if not part_cols:
        return spark.read.schema(schema).parquet(*files).select(*schema.fieldNames())
    hive_layout = all(
        unquote(a["path"]).startswith(
            _hive_dir({c: _partition_value_str(a.get(f"partition.{c}")) for c in part_cols}) + "/"
        )
        for a in actions
    )
    if hive_layout:
        df = spark.read.schema(schema).option("basePath", root).parquet(*files)
        return df.select(*schema.fieldNames())
    return _read_with_partition_map(spark, schema, part_cols, files, actions)


def _readable_table(path: str, version: int | None) -> DeltaTable:
    """The table at ``path`` if this layer can read its files itself (no deletion vectors, no column
    mapping: those need the native Delta connector)."""
    table = DeltaTable(path, version=version)
    features = set(table.protocol().reader_features or [])
    unsupported = features & {"deletionVectors", "columnMapping"}
    if unsupported:
        raise UnsupportedTableError(
            f"{path}: reader features {sorted(unsupported)} need the native Delta connector "
            "(lake.engine=native)"
        )
    return table


def read_arrow(
    path: str,
    *,
    columns: Sequence[str] | None = None,
    partitions: Mapping[str, Sequence[str]] | None = None,
    version: int | None = None,
) -> pa.Table:
    """The table at ``path`` (``columns`` of the ``partitions`` given) read in this process with pyarrow.

    For what the driver needs whole anyway (a training frame): no Spark job and no JVM-to-Arrow
    conversion. Decimals come as doubles, as :func:`pipelines.core.lake.decimals_as_double` gives Spark.
    Raises :class:`UnsupportedTableError` where only the native connector can read the table.
    """
    if not table_exists(path):
        raise FileNotFoundError(f"no Delta table at {path}")
    dataset = _readable_table(path, version).to_pyarrow_dataset()
    where = None
    for column, values in (partitions or {}).items():
        term = pc.field(column).isin(list(values))
        where = term if where is None else where & term
    table = dataset.to_table(columns=list(columns) if columns is not None else None, filter=where)
    return arrow_decimals_as_double(table)


def data_files(
    path: str, partitions: Mapping[str, Sequence[str]], *, version: int | None = None
) -> list[str]:
    """URIs of the data files holding ``partitions`` (column -> values) in the snapshot ``version``.

    For readers outside Spark (executor tasks reading with pyarrow); the table must be one this layer reads
    itself (else :class:`UnsupportedTableError`). The files hold no partition columns.
    """
    table = _readable_table(path, version)
    wanted = {c: set(v) for c, v in partitions.items()}
    files = []
    for a in pa.table(table.get_add_actions(flatten=True)).to_pylist():
        if all(_partition_value_str(a.get(f"partition.{c}")) in v for c, v in wanted.items()):
            file = _file_path(path, a)
            files.append(file if "://" in file else f"file://{file}")
    return sorted(files)


def _file_path(path: str, action: dict[str, Any]) -> str:
    """The data file of an add action: delta-rs returns the log's URI-encoded paths, relative or absolute."""
    name = unquote(action["path"])
    return name if "://" in action["path"] else f"{path.rstrip('/')}/{name}"


def _read_with_partition_map(
    spark: SparkSession,
    schema: T.StructType,
    part_cols: list[str],
    files: list[str],
    actions: list[dict[str, Any]],
) -> DataFrame:
    """Files not laid out as ``col=value`` folders: join partition values by file path."""
    data_schema = T.StructType([f for f in schema.fields if f.name not in part_cols])
    # Spark's _metadata.file_path is URI-encoded: match on the decoded file name (unique per data file).
    data = (
        spark.read.schema(data_schema)
        .parquet(*files)
        .withColumn("_file", F.element_at(F.split(F.url_decode(F.col("_metadata.file_path")), "/"), -1))
    )
    map_schema = T.StructType(
        [T.StructField("_file", T.StringType())] + [T.StructField(c, T.StringType()) for c in part_cols]
    )
    rows = [
        (f.rsplit("/", 1)[-1], *[_partition_value_str(a.get(f"partition.{c}")) for c in part_cols])
        for f, a in zip(files, actions, strict=True)
    ]
    pmap = spark.createDataFrame(rows, map_schema)
    for field in schema.fields:
        if field.name in part_cols:
            pmap = pmap.withColumn(field.name, F.col(field.name).cast(field.dataType))
    return data.join(F.broadcast(pmap), "_file").select(*schema.fieldNames())


# ------------------------------------------------------------------------------------------- write
_TABLE_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _table_lock(path: str) -> threading.Lock:
    """One lock per table path: writes to one table from threads of this process take turns (a
    partition overwrite reads the table's state before it commits), writes to different tables do not."""
    with _LOCKS_LOCK:
        return _TABLE_LOCKS.setdefault(path.rstrip("/"), threading.Lock())


def write_delta(df: DataFrame, path: str, **options: Any) -> WriteResult:
    """Write ``df`` to the Delta table at ``path`` in one atomic commit (options: :func:`_write_delta`).

    Writes to one table from threads of this process take turns; writes to different tables do not.
    """
    with _table_lock(path):
        return _write_delta(df, path, **options)


def _write_delta(
    df: DataFrame,
    path: str,
    *,
    mode: WriteMode = "append",
    partition_by: Sequence[str] = (),
    replace_partitions: Mapping[str, Sequence[Any]] | None = None,
    merge_schema: bool = False,
    engine: Engine = "auto",
    commit_metadata: Mapping[str, Any] | None = None,
    before_commit: Callable[[DataFrame], Any] | None = None,
) -> WriteResult:
    """Write ``df`` to the Delta table at ``path`` in one atomic commit.

    ``mode="append"`` adds rows; ``mode="overwrite"`` replaces the whole table, or, with
    ``replace_partitions={"month": ["2024-01"]}``, only those partitions (replaceWhere semantics: every row
    written must belong to them). The schema is enforced against an existing table.

    ``before_commit`` is called with the rows about to be committed; if it raises, nothing is committed
    (and the exception propagates); what it returns comes back as ``WriteResult.checked``. The bridge
    passes the staged files, so checks read written Parquet instead of recomputing ``df``; the native
    engine passes ``df`` itself.
    """
    plan = _plan_write(df.schema, path, mode, partition_by, replace_partitions, merge_schema)
    df = df.select(*plan.target.fieldNames())
    if resolve_engine(df.sparkSession, engine) == "native":
        checked = before_commit(df) if before_commit is not None else None
        result = _write_native(df, path, mode, plan.partition_by, replace_partitions, merge_schema)
        return dataclasses.replace(result, checked=checked)

    def stage(staging: str, spark_staging: str) -> Any:
        writer = df.write.mode("overwrite")
        if plan.partition_by:
            writer = writer.partitionBy(*plan.partition_by)
        writer.parquet(spark_staging)
        if before_commit is None:
            return None
        return before_commit(df.sparkSession.read.schema(plan.target).parquet(spark_staging))

    return _write_bridge(path, plan, mode, replace_partitions, commit_metadata, stage)


def write_rows(
    spark: SparkSession,
    rows: Sequence[Sequence[Any]],
    schema: T.StructType | str,
    path: str,
    *,
    mode: WriteMode = "append",
    partition_by: Sequence[str] = (),
    replace_partitions: Mapping[str, Sequence[Any]] | None = None,
    merge_schema: bool = False,
    engine: Engine = "auto",
) -> WriteResult:
    """Write a few rows made by the driver (tuples in ``schema`` order) like :func:`write_delta`.

    The bridge writes their Parquet in this process with pyarrow: a run record or a report of a dozen
    rows costs milliseconds instead of a Spark job (about half a second each, ten of them a month).
    The native engine goes through Spark.
    """
    schema = T._parse_datatype_string(schema) if isinstance(schema, str) else schema
    if resolve_engine(spark, engine) == "native":
        return write_delta(
            spark.createDataFrame(list(rows), schema),
            path,
            mode=mode,
            partition_by=partition_by,
            replace_partitions=replace_partitions,
            merge_schema=merge_schema,
            engine="native",
        )
    names = schema.fieldNames()
    with _table_lock(path):
        plan = _plan_write(schema, path, mode, partition_by, replace_partitions, merge_schema)
        table = pa.Table.from_pylist(
            [dict(zip(names, row, strict=True)) for row in rows], schema=_arrow_schema(plan.target)
        )

        def stage(staging: str, _: str) -> None:  # one file per partition, in Spark's folder layout
            fs = _fs(path)[0]
            keys = plan.partition_by
            groups: dict[str, list[int]] = {}
            for i, row in enumerate(table.select(keys).to_pylist()):
                folder = _hive_dir({k: _partition_value_str(v) for k, v in row.items()})
                groups.setdefault(f"{staging}/{folder}".rstrip("/"), []).append(i)
            for n, (folder, index) in enumerate(groups.items()):
                fs.create_dir(folder, recursive=True)
                part = table.take(index).drop_columns(keys)
                pq.write_table(part, f"{folder}/part-{n:05d}.snappy.parquet", filesystem=fs)

        return _write_bridge(path, plan, mode, replace_partitions, None, stage)


@dataclass(frozen=True)
class _WritePlan:
    exists: bool
    partition_by: list[str]
    target: T.StructType  # the schema to write: the table's order, then new columns
    new_columns: list[T.StructField]


def _plan_write(
    schema: T.StructType,
    path: str,
    mode: WriteMode,
    partition_by: Sequence[str],
    replace_partitions: Mapping[str, Sequence[Any]] | None,
    merge_schema: bool,
) -> _WritePlan:
    """Check a write of rows of ``schema`` against the table at ``path`` (if any): partition columns,
    the schema (:func:`check_schema`), the partitions to replace."""
    if replace_partitions is not None and mode != "overwrite":
        raise ValueError("replace_partitions needs mode='overwrite'")
    exists = table_exists(path)
    partition_by = list(partition_by)
    if exists:
        existing_parts = partition_columns_of(path)
        if partition_by and partition_by != existing_parts:
            raise SchemaMismatchError(
                f"write to {path}: partition columns {partition_by} differ from the table's {existing_parts}"
            )
        partition_by = existing_parts
        table_schema = spark_schema_of(path)
        target = check_schema(schema, table_schema, table=path, merge_schema=merge_schema)
        new_columns = [f for f in target.fields if f.name not in table_schema.fieldNames()]
    else:
        missing = [c for c in partition_by if c not in schema.fieldNames()]
        if missing:
            raise MissingColumnsError(missing, f"write to {path} (partition columns)")
        target = T.StructType([T.StructField(f.name, f.dataType, True) for f in schema.fields])
        new_columns = []
    if replace_partitions is not None:
        bad = [c for c in replace_partitions if c not in partition_by]
        if bad:
            raise ValueError(f"write to {path}: replace_partitions on non-partition columns {bad}")
    return _WritePlan(exists, partition_by, target, new_columns)


def _write_native(
    df: DataFrame,
    path: str,
    mode: WriteMode,
    partition_by: list[str],
    replace_partitions: Mapping[str, Sequence[Any]] | None,
    merge_schema: bool,
) -> WriteResult:
    writer = df.write.format("delta").mode(mode)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if replace_partitions:
        clauses = []
        for col, values in replace_partitions.items():
            quoted = ", ".join("'" + str(_partition_value_str(v)).replace("'", "''") + "'" for v in values)
            clauses.append(f"`{col}` IN ({quoted})")
        writer = writer.option("replaceWhere", " AND ".join(clauses))
    writer.save(path)
    table = DeltaTable(path)
    metrics = table.history(1)[0].get("operationMetrics", {})
    return WriteResult(table.version(), int(metrics.get("numFiles", 0)), int(metrics.get("numOutputRows", 0)))


def _write_bridge(
    path: str,
    plan: _WritePlan,
    mode: WriteMode,
    replace_partitions: Mapping[str, Sequence[Any]] | None,
    commit_metadata: Mapping[str, Any] | None,
    stage: Callable[[str, str], Any],
) -> WriteResult:
    """Commit what ``stage(staging folder, its URI)`` writes there (Parquet files in ``col=value``
    folders) as one Delta transaction; ``stage``'s return value comes back as ``WriteResult.checked``."""
    fs, root = _fs(path)
    txn = uuid.uuid4().hex
    staging = f"{root.rstrip('/')}/{STAGING_DIR}/{txn}"
    spark_staging = f"{path.rstrip('/')}/{STAGING_DIR}/{txn}"  # Spark wants the URI form
    moved: list[str] = []
    try:
        checked = stage(staging, spark_staging)
        actions, rows = _stage_to_table(fs, root, staging, plan.target, plan.partition_by, txn, moved)
        if replace_partitions is not None:
            allowed = {c: {_partition_value_str(v) for v in vs} for c, vs in replace_partitions.items()}
            for action in actions:
                for col, values in allowed.items():
                    if action.partition_values.get(col) not in values:
                        raise ValueError(
                            f"write to {path}: rows outside the partitions being replaced "
                            f"({col}={action.partition_values.get(col)!r} not in {sorted(map(str, values))})"
                        )
        schema = DeltaSchema.from_arrow(_arrow_schema(plan.target))
        partition_by = plan.partition_by or None
        props = CommitProperties(custom_metadata={"churnlake.txn": txn, **(commit_metadata or {})})
        if not plan.exists:
            create_table_with_add_actions(
                path,
                schema,
                actions,
                mode="error",
                partition_by=partition_by,
                commit_properties=props,
            )
        else:
            table = DeltaTable(path)
            if plan.new_columns:  # merge_schema: the commit alone would not change the table's schema
                table.alter.add_columns(
                    DeltaSchema.from_arrow(_arrow_schema(T.StructType(plan.new_columns))).fields
                )
                table = DeltaTable(path)
            filters = None
            if replace_partitions is not None:
                filters = [
                    (col, "in", [_partition_value_str(v) for v in values])
                    for col, values in replace_partitions.items()
                ]
            table.create_write_transaction(
                actions,
                mode=mode,
                schema=schema,
                partition_by=partition_by,
                partition_filters=filters,
                commit_properties=props,
            )
    except BaseException:
        for file in moved:  # not committed: invisible anyway, but do not leave litter behind
            with contextlib.suppress(OSError):
                fs.delete_file(file)
        raise
    finally:
        with contextlib.suppress(OSError):
            fs.delete_dir(staging)
    version = DeltaTable(path).version()
    log.info("committed %s v%d: %d files, %d rows (%s)", path, version, len(actions), rows, mode)
    return WriteResult(version, len(actions), rows, checked)


def _stage_to_table(
    fs: pafs.FileSystem,
    root: str,
    staging: str,
    schema: T.StructType,
    partition_by: list[str],
    txn: str,
    moved: list[str],
) -> tuple[list[AddAction], int]:
    infos = fs.get_file_info(pafs.FileSelector(staging, recursive=True))
    actions: list[AddAction] = []
    total = 0
    now_ms = int(time.time() * 1000)
    for info in infos:
        if info.type != pafs.FileType.File or not info.base_name.endswith(".parquet"):
            continue
        rel = info.path[len(staging) + 1 :]
        parts = rel.split("/")[:-1]
        values: dict[str, str | None] = {}
        for part in parts:
            key, _, raw = part.partition("=")
            values[key] = None if raw == _HIVE_NULL else unquote(raw)
        values = {c: values.get(c) for c in partition_by}
        rows, stats = file_stats(fs, info.path, schema)
        if rows == 0:
            continue
        rel_dir = _hive_dir(values)
        name = info.base_name if txn in info.base_name else f"{txn}-{info.base_name}"
        rel_path = f"{rel_dir}/{name}" if rel_dir else name
        dest = f"{root.rstrip('/')}/{rel_path}"
        if rel_dir:
            fs.create_dir(f"{root.rstrip('/')}/{rel_dir}", recursive=True)
        fs.move(info.path, dest)
        moved.append(dest)
        total += rows
        actions.append(
            AddAction(
                path=rel_path,  # delta-rs URI-encodes it in the log
                size=info.size,
                partition_values=values,
                modification_time=now_ms,
                data_change=True,
                stats=stats,
            )
        )
    return actions, total


# ------------------------------------------------------------------------------------------ vacuum
def vacuum(path: str, *, retention_hours: int = 168, dry_run: bool = False) -> list[str]:
    """Delete files no version within ``retention_hours`` needs, and leftovers of failed writes.

    Leftover staging folders (``_staging``) of writes that never committed are removed whatever their
    age when ``retention_hours`` is 0, else when older than the retention.
    """
    fs, root = _fs(path)
    removed: list[str] = []
    staging_root = f"{root.rstrip('/')}/{STAGING_DIR}"
    cutoff = time.time() - retention_hours * 3600
    info = fs.get_file_info(staging_root)
    if info.type == pafs.FileType.Directory:
        for sub in fs.get_file_info(pafs.FileSelector(staging_root)):
            if retention_hours == 0 or (sub.mtime is not None and sub.mtime.timestamp() < cutoff):
                removed.append(sub.path)
                if not dry_run:
                    fs.delete_dir(sub.path)
    removed += DeltaTable(path).vacuum(
        retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=False, full=True
    )
    return removed
