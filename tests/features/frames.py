"""Expected frames built by name: an explicit schema (column -> type, in output order) and one dict per row.

A row that misses a column of the schema, or names one the schema lacks, is an error here, so an expected
frame always spells out every column the function under test returns; ``assertDataFrameEqual`` then
compares names, order, types and values of the whole frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame, SparkSession

# The CDR columns the feature families read (the silver table's, after ``select_cdr_window``).
CDR_COLUMNS = {
    "subscriber_id": "string",
    "event_ts": "timestamp",
    "event_type": "string",
    "direction": "string",
    "duration_s": "int",
    "volume_kb": "bigint",
    "other_party": "string",
    "other_party_operator": "string",
    "roaming": "boolean",
    "roaming_country": "string",
}


def frame(spark: SparkSession, schema: Mapping[str, str], rows: Sequence[Mapping[str, Any]]) -> DataFrame:
    """A DataFrame of ``rows`` (dicts by column name) with exactly the columns and types of ``schema``."""
    columns = list(schema)
    for row in rows:
        missing, unknown = set(columns) - set(row), set(row) - set(columns)
        if missing or unknown:
            raise ValueError(f"row {row} misses {sorted(missing)} and has unknown {sorted(unknown)}")
    ddl = ", ".join(f"`{name}` {kind}" for name, kind in schema.items())
    return spark.createDataFrame([tuple(row[c] for c in columns) for row in rows], ddl)
