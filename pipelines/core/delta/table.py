"""What a Delta table is and holds, without reading its rows: engines, existence, versions, partitions,
and the folder layout of partition values (Spark's Hive-style escaping)."""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines.core.delta.damage import _fs, check_log_folder, open_table

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


@contextlib.contextmanager
def scratch_folder(path: str, prefix: str) -> Iterator[str]:
    """A fresh folder in the staging area of the table at ``path`` (a path or URI, as ``path`` is), removed
    with what it holds when the block ends; a killed run's is removed by
    :func:`pipelines.core.delta.vacuum.vacuum`, like a failed write's."""
    name = f"{STAGING_DIR}/{prefix}-{uuid.uuid4().hex}"
    fs, folder = _fs(f"{path.rstrip('/')}/{name}")
    try:
        yield f"{path.rstrip('/')}/{name}"
    finally:
        if fs.get_file_info(folder).type == pafs.FileType.Directory:
            fs.delete_dir(folder)


def table_exists(path: str) -> bool:
    """True when ``path`` holds a Delta table; a log folder without commits is a damaged table
    (:class:`~pipelines.core.delta.damage.DamagedTableError`), never "no table": a write would start a new
    table over its files."""
    if DeltaTable.is_deltatable(path):
        return True
    check_log_folder(path)
    return False


def table_version(path: str) -> int | None:
    """Current version of the table at ``path``, or None when there is no table."""
    if not table_exists(path):
        return None
    return open_table(path).version()


def table_history(path: str, limit: int | None = None) -> list[dict[str, Any]]:
    """Commit history, newest first (version, timestamp, operation, parameters, custom metadata)."""
    return open_table(path).history(limit)


def spark_schema_of(path: str, version: int | None = None) -> T.StructType:
    arrow = pa.schema(open_table(path, version).schema().to_arrow())
    return from_arrow_schema(arrow)


def partition_columns_of(path: str) -> list[str]:
    return list(open_table(path).metadata().partition_columns)


def partition_values(path: str, columns: Sequence[str]) -> set[tuple[str | None, ...]]:
    """Distinct partition values (as strings) of the live files: what a table holds, without a Spark job."""
    if not table_exists(path):
        return set()
    actions = pa.table(open_table(path).get_add_actions(flatten=True)).to_pylist()
    return {tuple(_partition_value_str(a.get(f"partition.{c}")) for c in columns) for a in actions}


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
