"""The Arrow path of reading and checking a delivery: Spark tasks parse, check and stage the landing files
with pyarrow in their Python workers (:mod:`pipelines.ingest.tasks`); the JVM reads back only the staged
Parquet, which holds the same rows as :func:`~pipelines.ingest.read.read_delivery` followed by
:func:`~features.cleaning.validate_rows`, so the rest of ingest is one code for both paths.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.ingest.files import LandingFile
from pipelines.ingest.tasks import STAGED_DDL, TaskPlan, check_files, checked_schema


def arrow_readable(files: Sequence[LandingFile]) -> bool:
    """Whether the Arrow path reads these files (CSV, plain or gzip); Parquet landing goes the Spark path."""
    return all(f.fmt == "csv" for f in files)


def read_checked(
    spark: SparkSession,
    files: Sequence[LandingFile],
    *,
    source: str,
    month: str,
    late_days: int,
    target: str,
) -> DataFrame | None:
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
    )
    os.makedirs(plan.target, exist_ok=True)
    staged = spark.range(0, len(files), 1, len(files)).mapInArrow(check_files(plan), STAGED_DDL).collect()
    if any(r.rows < 0 for r in staged):
        return None
    schema = from_arrow_schema(checked_schema(source))
    paths = [r.file for r in staged if r.rows > 0]
    if not paths:
        return spark.createDataFrame([], schema)
    return spark.read.schema(schema).parquet(*paths).select(*[F.col(c) for c in schema.fieldNames()])
