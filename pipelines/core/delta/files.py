"""The schema a write may have, and what a data file holds (Delta statistics from its Parquet footer)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from features.errors import MissingColumnsError, SchemaMismatchError


def _arrow_schema(schema: T.StructType) -> pa.Schema:
    return to_arrow_schema(schema, timezone="UTC")


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
