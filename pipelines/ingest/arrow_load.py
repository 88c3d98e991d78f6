"""The Arrow path of ingesting a delivery: Spark tasks parse, check, pseudonymise and resolve the landing
files with pyarrow in their Python workers (:mod:`pipelines.ingest.tasks`) and stage them as Parquet;
Spark reads back only the keys to find duplicates; a second pass of tasks writes the silver table's files
(:mod:`pipelines.ingest.publish`). The rows never enter the JVM.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

from pipelines.core.delta.files import _arrow_schema
from pipelines.core.privacy import PseudonymKey
from pipelines.ingest.files import LandingFile
from pipelines.ingest.kernels import RAW_COL, REASONS_COL
from pipelines.ingest.owners import Owners
from pipelines.ingest.publish import DROPS_SCHEMA, PUBLISHED_DDL, PublishPlan, publish_files
from pipelines.ingest.spec import SourceSpec
from pipelines.ingest.tasks import STAGED_DDL, TaskPlan, check_files, checked_schema

log = logging.getLogger(__name__)


def arrow_readable(files: Sequence[LandingFile]) -> bool:
    """Whether the Arrow path reads these files (CSV, plain or gzip); Parquet landing (and a delivery of
    no files) goes the Spark path."""
    return bool(files) and all(f.fmt == "csv" for f in files)


@dataclass(frozen=True)
class Staged:
    """A delivery's checked rows, staged: per landing file, one Parquet file of its good rows and one of
    its rejected rows (if any)."""

    good_rows: DataFrame  # typed columns and place (file id, position)
    rejected_rows: DataFrame  # the same with reasons and raw values
    files: tuple[tuple[int, str], ...]  # (file id, staged file of its good rows)
    rejected: dict[str, int] = field(default_factory=dict)  # rows per first reason
    rows_read: int = 0

    @property
    def good(self) -> int:
        return self.rows_read - sum(self.rejected.values())


def stage_checked(
    spark: SparkSession,
    files: Sequence[LandingFile],
    *,
    source: str,
    month: str,
    late_days: int,
    target: str,
    key: PseudonymKey | None = None,
    owners: Owners | None = None,
) -> Staged | None:
    """The delivery's checked rows, staged under ``target`` (a folder the caller removes) by one task per
    file; None when a file needs the Spark path."""
    # the largest files first: the tasks of a month end together
    order = sorted(range(len(files)), key=lambda i: -files[i].size)
    plan = TaskPlan(
        source=source,
        month=month,
        late_days=late_days,
        paths=tuple(f.path for f in files),
        columns=tuple(f.columns for f in files),
        multiline=tuple(f.multiline for f in files),
        order=tuple(order),
        target=target.removeprefix("file://"),
        key=key,
        owners=owners,
    )
    os.makedirs(plan.target, exist_ok=True)
    staged = spark.range(0, len(files), 1, len(files)).mapInArrow(check_files(plan), STAGED_DDL).collect()
    refused = [r.error for r in staged if r.rows < 0]
    if refused:
        log.warning("%s %s: the Spark path reads this delivery (%s)", source, month, "; ".join(refused))
        return None
    rejected = sum((Counter(json.loads(r.rejected)) for r in staged), Counter())
    schema = from_arrow_schema(checked_schema(source, resolved=owners is not None))
    good_schema = StructType([f for f in schema.fields if f.name not in (REASONS_COL, RAW_COL)])
    good = tuple(sorted((r.fid, r.file) for r in staged if r.rows > 0))
    bad = sorted(r.rejected_file for r in staged if r.rejected_file)
    return Staged(
        _read(spark, good_schema, [p for _, p in good]),
        _read(spark, schema, bad),
        good,
        dict(rejected),
        sum(r.rows for r in staged),
    )


def _read(spark: SparkSession, schema: StructType, paths: Sequence[str]) -> DataFrame:
    if not paths:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*paths).select(*[F.col(c) for c in schema.fieldNames()])


def write_drops(drops: Sequence[pa.Table], path: str) -> tuple[str | None, int]:
    """The positions ``(_fid, _pos)`` of the rows to leave out, as one small Parquet file (None: none),
    and how many distinct rows they name."""
    if not drops:
        return None, 0
    table = pa.concat_tables([t.select(["_fid", "_pos"]).cast(DROPS_SCHEMA) for t in drops])
    table = table.group_by(["_fid", "_pos"]).aggregate([])
    if table.num_rows == 0:
        return None, 0
    pq.write_table(table, path)
    return path, table.num_rows


def keys_and_places(staged: Staged, keys: Sequence[str]) -> pa.Table:
    """The staged good rows' keys and places (``_fid``, ``_pos``), read in this process (at least one
    staged file)."""
    paths = [p.removeprefix("file://") for _, p in staged.files]
    return ds.dataset(paths, format="parquet").to_table(columns=[*keys, "_fid", "_pos"])


class PublishMismatchError(RuntimeError):
    """The silver files do not hold the good rows less the duplicates: nothing is committed."""


def publisher(
    spark: SparkSession,
    staged: Staged,
    spec: SourceSpec,
    month: str,
    schema: StructType,
    drops: str | None,
    expected_rows: int,
) -> Callable[[str], Any]:
    """The ``stage`` of :func:`pipelines.core.delta.write_files`: one task per staged file writes its good
    rows, less ``drops``, as the table's files (columns of ``schema``, partition columns last).

    Only the files the tasks report stay (a failed attempt's are removed), and they must hold
    ``expected_rows`` rows."""
    names = [f.name for f in schema.fields if f.name not in spec.partition_by] + list(spec.partition_by)
    arrow = _arrow_schema(StructType([schema[n] for n in names]))

    def stage(folder: str) -> None:
        plan = PublishPlan(
            month=month,
            staged=staged.files,
            drops=drops,
            schema=arrow,
            partition_by=tuple(spec.partition_by),
            event_column=spec.event_column,
            event_month_column=spec.event_month_column,
            delivery_column=spec.delivery_column,
            target=folder,
        )
        n = len(plan.staged)
        done = spark.range(0, n, 1, n).mapInArrow(publish_files(plan), PUBLISHED_DDL).collect() if n else []
        reported = {os.path.normpath(f) for r in done for f in json.loads(r.files)}
        for root, _, written in os.walk(folder):
            for name in written:
                path = os.path.normpath(os.path.join(root, name))
                if path not in reported:
                    os.remove(path)
        rows = sum(r.rows for r in done)
        if rows != expected_rows:
            raise PublishMismatchError(
                f"{spec.name} {month}: {rows} rows written to silver, {expected_rows} expected (the good "
                "rows less the duplicates); nothing committed"
            )

    return stage


__all__ = ["Staged", "arrow_readable", "keys_and_places", "publisher", "stage_checked", "write_drops"]
