"""Tables by name: the lake root and table folders come from config, the engine from ``lake.engine``."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from pipelines.core import delta, interrupt, lease
from pipelines.core.config import Config

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _table_errors(*, writing: bool = False) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """The lake's errors under the table's logical name: a damaged or missing table as the Delta layer
    names it, and (``writing``) a table this user cannot write, checked before any Spark job starts and
    recognised in whatever a write raises (:class:`~pipelines.core.delta.TableNotWritableError`)."""

    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        signature = inspect.signature(method)

        @functools.wraps(method)
        def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            arguments = signature.bind(*args, **kwargs).arguments
            name = arguments["name"]
            path = arguments["self"].path(name)
            try:
                if writing:
                    delta.check_writable(path, name)
                return method(*args, **kwargs)
            except delta.LakeTableError as exc:
                if exc.table == name:
                    raise
                raise exc.named(name) from exc.__cause__
            except Exception as exc:
                if writing and delta.permission_denied(exc):
                    file = getattr(exc, "filename", None) or path
                    raise delta.TableNotWritableError(name, file, "permission denied") from exc
                raise

        return run

    return wrap


def month_column(columns: Sequence[str]) -> str | None:
    """The partition column that holds a table's month (``month``, ``score_month``, ...), if any."""
    return next((c for c in columns if c == "month" or c.endswith("_month")), None)


def lease_keys(
    name: str, mode: delta.WriteMode, partitions: Mapping[str, Sequence[Any]] | None
) -> list[lease.LeaseKey]:
    """What a write must hold: nothing for an append (blind appends commute), the months of the
    partitions it replaces, or the whole table (an overwrite of all of it, or of partitions by no month)."""
    if mode == "append":
        return []
    column = month_column(list(partitions or {}))
    if partitions is None or column is None:
        return [lease.LeaseKey(name)]
    return [lease.LeaseKey(name, str(m)) for m in partitions[column]]


class Lake:
    """Read and write the pipeline's Delta tables by logical name.

    Every write that replaces data holds the lease of the table and month it replaces
    (:mod:`pipelines.core.lease`): one a stage took around its writes, or one taken for the write; the
    lease is checked again right before the commit.
    """

    def __init__(self, spark: SparkSession, cfg: Config) -> None:
        self.spark = spark
        self.cfg = cfg
        self.engine = cfg.lake.engine

    def path(self, name: str) -> str:
        return self.cfg.table_path(name)

    @_table_errors()
    def exists(self, name: str) -> bool:
        return delta.table_exists(self.path(name))

    @_table_errors()
    def version(self, name: str) -> int | None:
        return delta.table_version(self.path(name))

    @_table_errors()
    def partition_values(self, name: str, *columns: str) -> set[tuple[str | None, ...]]:
        return delta.partition_values(self.path(name), columns)

    @_table_errors()
    def read(self, name: str, *, version: int | None = None) -> DataFrame:
        return delta.read_delta(self.spark, self.path(name), version=version, engine=self.engine)

    @_table_errors()
    def read_arrow(
        self,
        name: str,
        *,
        columns: Sequence[str] | None = None,
        partitions: Mapping[str, Sequence[str]] | None = None,
    ) -> pa.Table:
        """``columns`` of ``partitions`` of the table, read in this process (no Spark job): for data the
        driver needs whole; see :func:`pipelines.core.delta.read_arrow`."""
        return delta.read_arrow(self.path(name), columns=columns, partitions=partitions)

    @_table_errors()
    def count_rows(self, name: str) -> int | None:
        """The table's rows from its log's file statistics, read in this process (None: not recorded, or
        only the native connector reads the table)."""
        try:
            return delta.count_rows(self.path(name))
        except delta.UnsupportedTableError:
            return None

    def read_rows(self, name: str, *, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every row of a small table (run records) as dicts, read in this process; through Spark where
        only the native connector reads the table."""
        try:
            return self.read_arrow(name, columns=columns).to_pylist()
        except delta.UnsupportedTableError:
            df = self.read(name)
            return [r.asDict() for r in (df.select(*columns) if columns else df).collect()]

    def read_or_none(self, name: str) -> DataFrame | None:
        return self.read(name) if self.exists(name) else None

    @contextlib.contextmanager
    def _leased(
        self, name: str, mode: delta.WriteMode, partitions: Mapping[str, Sequence[Any]] | None
    ) -> Iterator[Callable[[], None] | None]:
        """Hold the write's leases; yields the check to run right before its commit."""
        keys = lease_keys(name, mode, partitions)
        if keys:
            interrupt.stop_if_requested(f"writing {name}")
        if not keys or not self.cfg.lake.lease.enabled:
            yield None
            return
        with lease.hold(self.cfg, keys, None):
            yield lambda: lease.check_held(self.cfg, keys)

    @_table_errors(writing=True)
    def write(
        self,
        df: DataFrame,
        name: str,
        *,
        mode: delta.WriteMode = "append",
        partition_by: Sequence[str] = (),
        replace_partitions: Mapping[str, Sequence[Any]] | None = None,
        merge_schema: bool = False,
        commit_metadata: Mapping[str, Any] | None = None,
        before_commit: Callable[[DataFrame], Any] | None = None,
    ) -> delta.WriteResult:
        with self._leased(name, mode, replace_partitions) as guard:
            return delta.write_delta(
                df,
                self.path(name),
                mode=mode,
                partition_by=partition_by,
                replace_partitions=replace_partitions,
                merge_schema=merge_schema,
                engine=self.engine,
                commit_metadata=commit_metadata,
                before_commit=before_commit,
                commit_guard=guard,
            )

    @_table_errors(writing=True)
    def write_files(
        self,
        schema: T.StructType,
        name: str,
        stage: Callable[[str], None],
        *,
        partitions: Mapping[str, Sequence[Any]],
        partition_by: Sequence[str],
        before_commit: Callable[[DataFrame], Any] | None = None,
    ) -> delta.WriteResult:
        """Replace ``partitions`` with the Parquet files ``stage(folder)`` writes (rows of ``schema``, in
        ``col=value`` folders): tasks that hold the rows in Arrow write the table's files themselves
        (:func:`pipelines.core.delta.write_files`)."""
        with self._leased(name, "overwrite", partitions) as guard:
            return delta.write_files(
                self.spark,
                schema,
                self.path(name),
                stage,
                mode="overwrite",
                partition_by=partition_by,
                replace_partitions=partitions,
                before_commit=before_commit,
                engine=self.engine,
                commit_guard=guard,
            )

    def replace(
        self,
        df: DataFrame,
        name: str,
        partitions: Mapping[str, Sequence[Any]],
        *,
        merge_schema: bool = False,
        before_commit: Callable[[DataFrame], Any] | None = None,
    ) -> delta.WriteResult:
        """Replace exactly ``partitions`` of the table (partitioned by their columns, in that order):
        a rerun writes the same partitions again and touches nothing else."""
        return self.write(
            df,
            name,
            mode="overwrite",
            partition_by=list(partitions),
            replace_partitions=partitions,
            merge_schema=merge_schema,
            before_commit=before_commit,
        )

    @_table_errors(writing=True)
    def write_rows(
        self,
        rows: Sequence[Sequence[Any]],
        schema: T.StructType | str,
        name: str,
        *,
        mode: delta.WriteMode = "append",
        merge_schema: bool = False,
    ) -> delta.WriteResult:
        """Append (or write) a few rows made in the driver, tuples in ``schema`` order, without a Spark
        job where the engine allows (:func:`pipelines.core.delta.write_rows`)."""
        with self._leased(name, mode, None) as guard:
            return delta.write_rows(
                self.spark,
                rows,
                schema,
                self.path(name),
                mode=mode,
                merge_schema=merge_schema,
                engine=self.engine,
                commit_guard=guard,
            )

    @_table_errors(writing=True)
    def replace_rows(
        self,
        rows: Sequence[Sequence[Any]],
        schema: T.StructType | str,
        name: str,
        partitions: Mapping[str, Sequence[Any]],
        *,
        merge_schema: bool = False,
    ) -> delta.WriteResult:
        """:meth:`replace` for a few rows made in the driver (see :meth:`write_rows`)."""
        with self._leased(name, "overwrite", partitions) as guard:
            return delta.write_rows(
                self.spark,
                rows,
                schema,
                self.path(name),
                mode="overwrite",
                partition_by=list(partitions),
                replace_partitions=partitions,
                merge_schema=merge_schema,
                engine=self.engine,
                commit_guard=guard,
            )

    def versions(self, names: Sequence[str]) -> dict[str, int | None]:
        return {n: self.version(n) for n in names}


def decimals_as_double(df: DataFrame) -> DataFrame:
    """Decimal columns cast to double (cheap in Spark; Arrow would hand pandas Python Decimals)."""
    return df.select(
        *[
            F.col(f.name).cast("double").alias(f.name)
            if f.dataType.typeName() == "decimal"
            else F.col(f.name)
            for f in df.schema.fields
        ]
    )
