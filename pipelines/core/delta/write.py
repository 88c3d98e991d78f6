"""Writes: rows staged as Parquet inside the table, moved to their partition folders and committed in
one atomic Delta transaction with delta-rs (or Spark's own ``format("delta")`` on the native engine).

One concern with several steps (plan and check the write, stage, move with statistics, commit), kept in
one module because each step hands the next its private state (the plan, the moved files to undo).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError
from deltalake.transaction import AddAction, CommitProperties, create_table_with_add_actions
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from features.errors import MissingColumnsError, SchemaMismatchError
from pipelines.core import interrupt
from pipelines.core.delta.damage import open_table
from pipelines.core.delta.files import _arrow_schema, check_schema, file_stats
from pipelines.core.delta.table import (
    _HIVE_NULL,
    STAGING_DIR,
    Engine,
    WriteMode,
    WriteResult,
    _fs,
    _hive_dir,
    _partition_value_str,
    partition_columns_of,
    resolve_engine,
    spark_schema_of,
    table_exists,
)
from pipelines.core.faults import fault_point

log = logging.getLogger("pipelines.core.delta")

_COMMIT_ATTEMPTS = 50  # commits of other writers (appends, other partitions) to go past before giving up


class WriteConflictError(RuntimeError):
    """Another writer changed the partitions this write replaces after it planned (or made the table it
    was creating): nothing was committed."""


# Test-only injection point: called with the moved files between the moves and the commit (a test pauses
# a write there to race it with vacuum). Never set in production code.
_AFTER_MOVE: Callable[[list[str]], None] | None = None

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
    commit_guard: Callable[[], None] | None = None,
) -> WriteResult:
    """Write ``df`` to the Delta table at ``path`` in one atomic commit.

    ``mode="append"`` adds rows; ``mode="overwrite"`` replaces the whole table, or, with
    ``replace_partitions={"month": ["2024-01"]}``, only those partitions (replaceWhere semantics: every row
    written must belong to them). The schema is enforced against an existing table.

    ``before_commit`` is called with the rows about to be committed; if it raises, nothing is committed
    (and the exception propagates); what it returns comes back as ``WriteResult.checked``. The bridge
    passes the staged files, so checks read written Parquet instead of recomputing ``df``; the native
    engine passes ``df`` itself.

    ``commit_guard`` is called right before the commit (the caller's lease is still held); if it raises,
    nothing is committed.

    An overwrite fails with :class:`WriteConflictError` when another commit changed the files of the
    partitions it replaces (the whole table, without ``replace_partitions``) after this write planned:
    it never adds its rows beside another writer's. ``WriteResult.version`` is this commit's version.
    """
    plan = _plan_write(df.schema, path, mode, partition_by, replace_partitions, merge_schema)
    df = df.select(*plan.target.fieldNames())
    if resolve_engine(df.sparkSession, engine) == "native":
        checked = before_commit(df) if before_commit is not None else None
        if commit_guard is not None:
            commit_guard()
        with interrupt.commit_section():
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

    return _write_bridge(path, plan, mode, replace_partitions, commit_metadata, stage, commit_guard)


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
    commit_guard: Callable[[], None] | None = None,
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
            commit_guard=commit_guard,
        )
    names = schema.fieldNames()
    with _table_lock(path):
        plan = _plan_write(schema, path, mode, partition_by, replace_partitions, merge_schema)
        table = pa.Table.from_pylist(
            [dict(zip(names, row, strict=True)) for row in rows], schema=_arrow_schema(plan.target)
        )

        def stage(staging: str, _: str) -> None:  # one file per partition, in Spark's folder layout
            fs = _fs(path)[0]
            fs.create_dir(staging, recursive=True)  # no rows: an overwrite that replaces with nothing
            keys = plan.partition_by
            groups: dict[str, list[int]] = {}
            for i, row in enumerate(table.select(keys).to_pylist()):
                folder = _hive_dir({k: _partition_value_str(v) for k, v in row.items()})
                groups.setdefault(f"{staging}/{folder}".rstrip("/"), []).append(i)
            for n, (folder, index) in enumerate(groups.items()):
                fs.create_dir(folder, recursive=True)
                part = table.take(index).drop_columns(keys)
                pq.write_table(part, f"{folder}/part-{n:05d}.snappy.parquet", filesystem=fs)

        return _write_bridge(path, plan, mode, replace_partitions, None, stage, commit_guard)


def write_files(
    spark: SparkSession,
    schema: T.StructType,
    path: str,
    stage: Callable[[str], None],
    *,
    mode: WriteMode = "append",
    partition_by: Sequence[str] = (),
    replace_partitions: Mapping[str, Sequence[Any]] | None = None,
    before_commit: Callable[[DataFrame], Any] | None = None,
    engine: Engine = "auto",
    commit_guard: Callable[[], None] | None = None,
) -> WriteResult:
    """Commit the Parquet files ``stage(folder)`` writes like :func:`write_delta` commits a DataFrame.

    ``stage`` writes files of ``schema`` (the partition columns as ``col=value`` folders, not in the
    files) under the local folder it is given; Python tasks that already hold the rows as Arrow write the
    table's files themselves instead of handing the rows to the JVM. ``before_commit`` is called with
    the staged files read back. The native engine commits the staged rows through Spark (the rows then
    pass through the JVM once).
    """
    with _table_lock(path):
        plan = _plan_write(schema, path, mode, partition_by, replace_partitions, False)

        def read_back(spark_staging: str) -> DataFrame:
            return spark.read.schema(plan.target).parquet(spark_staging)

        if resolve_engine(spark, engine) == "native":
            fs, root = _fs(path)
            txn = uuid.uuid4().hex
            folder = f"{root.rstrip('/')}/{STAGING_DIR}/{txn}"
            try:
                fs.create_dir(folder, recursive=True)
                stage(folder)
                df = read_back(f"{path.rstrip('/')}/{STAGING_DIR}/{txn}")
                return _write_delta(
                    df, path, mode=mode, partition_by=plan.partition_by,
                    replace_partitions=replace_partitions, engine="native", before_commit=before_commit,
                    commit_guard=commit_guard,
                )  # fmt: skip
            finally:
                with contextlib.suppress(OSError):
                    fs.delete_dir(folder)

        def staged(staging: str, spark_staging: str) -> Any:
            _fs(path)[0].create_dir(staging, recursive=True)
            stage(staging)
            return None if before_commit is None else before_commit(read_back(spark_staging))

        return _write_bridge(path, plan, mode, replace_partitions, None, staged, commit_guard)


@dataclass(frozen=True)
class _WritePlan:
    exists: bool
    partition_by: list[str]
    target: T.StructType  # the schema to write: the table's order, then new columns
    new_columns: list[T.StructField]
    version: int | None = None  # the table's version when the write planned
    replaced: frozenset[str] | None = None  # an overwrite: the files it replaces, as of ``version``


def _replaced_files(
    table: DeltaTable, replace_partitions: Mapping[str, Sequence[Any]] | None
) -> frozenset[str]:
    """The live files an overwrite replaces: those of ``replace_partitions`` (None: every file)."""
    actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
    if replace_partitions is None:
        return frozenset(a["path"] for a in actions)
    wanted = {c: {_partition_value_str(v) for v in vs} for c, vs in replace_partitions.items()}
    return frozenset(
        a["path"]
        for a in actions
        if all(_partition_value_str(a.get(f"partition.{c}")) in vs for c, vs in wanted.items())
    )


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
    version, replaced = None, None
    if exists:
        table = open_table(path)
        version = table.version()
        if mode == "overwrite":
            replaced = _replaced_files(table, replace_partitions)
    return _WritePlan(exists, partition_by, target, new_columns, version, replaced)


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
    txn = uuid.uuid4().hex
    writer.option("userMetadata", f"churnlake.txn={txn}").save(path)
    # this write's commit (another writer may have committed after it): found by its metadata
    history = open_table(path).history(20)
    ours = [h for h in history if h.get("userMetadata") == f"churnlake.txn={txn}"] or history[:1]
    metrics = ours[0].get("operationMetrics", {})
    return WriteResult(
        int(ours[0]["version"]), int(metrics.get("numFiles", 0)), int(metrics.get("numOutputRows", 0))
    )


def _write_bridge(
    path: str,
    plan: _WritePlan,
    mode: WriteMode,
    replace_partitions: Mapping[str, Sequence[Any]] | None,
    commit_metadata: Mapping[str, Any] | None,
    stage: Callable[[str, str], Any],
    commit_guard: Callable[[], None] | None = None,
) -> WriteResult:
    """Commit what ``stage(staging folder, its URI)`` writes there (Parquet files in ``col=value``
    folders) as one Delta transaction; ``stage``'s return value comes back as ``WriteResult.checked``."""
    fs, root = _fs(path)
    txn = uuid.uuid4().hex
    staging = f"{root.rstrip('/')}/{STAGING_DIR}/{txn}"
    spark_staging = f"{path.rstrip('/')}/{STAGING_DIR}/{txn}"  # Spark wants the URI form
    moved: list[str] = []
    committed = False
    try:
        checked = stage(staging, spark_staging)
        fault_point("staged", path)
        if commit_guard is not None:
            commit_guard()
        with interrupt.commit_section():
            actions, rows = _stage_to_table(fs, root, staging, plan.target, plan.partition_by, txn, moved)
            if _AFTER_MOVE is not None:
                _AFTER_MOVE(list(moved))
            if replace_partitions is not None:
                allowed = {c: {_partition_value_str(v) for v in vs} for c, vs in replace_partitions.items()}
                for action in actions:
                    for col, values in allowed.items():
                        if action.partition_values.get(col) not in values:
                            raise ValueError(
                                f"write to {path}: rows outside the partitions being replaced "
                                f"({col}={action.partition_values.get(col)!r} "
                                f"not in {sorted(map(str, values))})"
                            )
            props = CommitProperties(
                custom_metadata={"churnlake.txn": txn, **(commit_metadata or {})}, max_commit_retries=0
            )
            version = _commit(path, plan, mode, replace_partitions, actions, props)
            committed = True  # from here on the files belong to the table (SIGTERM stops after this)
            fault_point("committed", path)
    except BaseException:
        if not committed:  # invisible anyway, but do not leave litter behind
            for file in moved:
                with contextlib.suppress(OSError):
                    fs.delete_file(file)
        raise
    finally:
        with contextlib.suppress(OSError):
            fs.delete_dir(staging)
    log.info("committed %s v%d: %d files, %d rows (%s)", path, version, len(actions), rows, mode)
    return WriteResult(version, len(actions), rows, checked)


def _commit(
    path: str,
    plan: _WritePlan,
    mode: WriteMode,
    replace_partitions: Mapping[str, Sequence[Any]] | None,
    actions: list[AddAction],
    props: CommitProperties,
) -> int:
    """Commit ``actions``; the version of this commit.

    delta-rs would retry a commit that lost the race for its version and let it through when the winner
    only added files, which for an overwrite of a still empty partition means both writers' rows stay.
    So the commit is made with no retries, against a table loaded just before it, after checking that the
    files it replaces are still those it planned with; a lost race reloads and checks again. The commit's
    version is then the loaded version plus one, not a version read after it (another writer's).
    """
    schema = DeltaSchema.from_arrow(_arrow_schema(plan.target))
    partition_by = plan.partition_by or None
    if not plan.exists:
        try:
            create_table_with_add_actions(
                path, schema, actions, mode="error", partition_by=partition_by, commit_properties=props
            )
        except Exception as exc:
            if table_exists(path):
                raise WriteConflictError(
                    f"write to {path}: another writer created the table meanwhile; nothing committed"
                ) from exc
            raise
        return 0
    filters = None
    if replace_partitions is not None:
        filters = [
            (col, "in", [_partition_value_str(v) for v in values])
            for col, values in replace_partitions.items()
        ]
    schema_added = False
    for _ in range(_COMMIT_ATTEMPTS):
        table = open_table(path)
        if plan.new_columns and not schema_added:  # merge_schema: the commit alone would not change it
            table.alter.add_columns(
                DeltaSchema.from_arrow(_arrow_schema(T.StructType(plan.new_columns))).fields
            )
            schema_added = True
            table = open_table(path)
        if plan.replaced is not None and plan.version != table.version():
            now = _replaced_files(table, replace_partitions)
            if now != plan.replaced:
                what = (
                    ", ".join(f"{c}={sorted(map(str, vs))}" for c, vs in replace_partitions.items())
                    if replace_partitions
                    else "the whole table"
                )
                raise WriteConflictError(
                    f"write to {path}: {what} changed after version {plan.version} (now "
                    f"{table.version()}): another writer committed there; nothing committed"
                )
        try:
            table.create_write_transaction(
                actions,
                mode=mode,
                schema=schema,
                partition_by=partition_by,
                partition_filters=filters,
                commit_properties=props,
            )
        except CommitFailedError:
            if open_table(path).version() == table.version():
                raise  # not a lost race
            continue
        return table.version() + 1
    raise WriteConflictError(f"write to {path}: {_COMMIT_ATTEMPTS} commits of other writers came first")


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
        if isinstance(fs, pafs.LocalFileSystem):  # a rename keeps Spark's write time: vacuum ages from now
            os.utime(dest)
        fault_point("moving", root)
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
