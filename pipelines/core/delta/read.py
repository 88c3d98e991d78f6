"""Reads: the snapshot (optionally an older version) resolved with delta-rs, its files handed to Spark
(partition columns restored) or read in this process with pyarrow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.core.arrow import arrow_decimals_as_double
from pipelines.core.delta.damage import (
    DamagedTableError,
    MissingTableError,
    open_table,
    table_label,
    vanished_file,
)
from pipelines.core.delta.table import (
    Engine,
    UnsupportedTableError,
    _hive_dir,
    _partition_value_str,
    resolve_engine,
    table_exists,
)


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
        raise MissingTableError(table_label(path), path, "no Delta table")
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
    table = open_table(path, version)
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
    Raises :class:`UnsupportedTableError` where only the native connector can read the table, and
    :class:`~pipelines.core.delta.damage.DamagedTableError` naming a data file that vanished under the read.
    """
    if not table_exists(path):
        raise MissingTableError(table_label(path), path, "no Delta table")
    dataset = _readable_table(path, version).to_pyarrow_dataset()
    where = None
    for column, values in (partitions or {}).items():
        term = pc.field(column).isin(list(values))
        where = term if where is None else where & term
    try:
        table = dataset.to_table(columns=list(columns) if columns is not None else None, filter=where)
    except OSError as exc:
        if (file := vanished_file(exc)) is None:
            raise
        raise DamagedTableError(
            table_label(path), file, "data file missing (deleted under the read, or by a vacuum)"
        ) from exc
    return arrow_decimals_as_double(table)


def count_rows(path: str, *, version: int | None = None) -> int | None:
    """The rows of the table's snapshot, from the log's file statistics alone (None: a file has none)."""
    actions = pa.table(_readable_table(path, version).get_add_actions(flatten=True))
    if "num_records" not in actions.column_names or actions["num_records"].null_count:
        return None
    return int(pc.sum(actions["num_records"]).as_py() or 0)


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
