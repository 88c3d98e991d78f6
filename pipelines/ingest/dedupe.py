"""Duplicates: a record delivered more than once is loaded once.

Within a delivery the last delivered copy wins (latest file, then the last row in it). Across deliveries,
a record already loaded from another month's delivery is a duplicate, not a new row (CDRs: late records
against the previous delivery; care contacts: against every other delivery).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from features.calendar import add_months, month_start
from pipelines.core.lake import Lake
from pipelines.ingest.spec import SourceSpec

MAX_REPEATED = 200_000  # repeated keys collected and broadcast; beyond that, joined by a shuffle


def dedupe_repeated(good: DataFrame, keys: list[str], *, max_repeated: int = MAX_REPEATED) -> DataFrame:
    """Keep the last delivered copy of each key (latest file, then last row in it), in one pass.

    One aggregation finds the keys that repeat and, for each, the position of its last delivered copy;
    every other copy of those keys is filtered out. Usually few: collected and broadcast (more than
    ``max_repeated``: joined by a shuffle instead).
    """
    position = F.struct("_fid", "_block", "_pos")
    repeated = (
        good.groupBy(*keys)
        .agg(F.count("*").alias("_n"), F.max(position).alias("_keep"))
        .where(F.col("_n") > 1)
        .select(*keys, "_keep")
    )
    found = repeated.limit(max_repeated + 1).collect()
    if not found:
        return good
    if len(found) <= max_repeated:
        repeated = F.broadcast(good.sparkSession.createDataFrame(found, repeated.schema))
    joined = good.join(repeated, keys, "left")
    return joined.where(F.col("_keep").isNull() | (position == F.col("_keep"))).drop("_keep")


def drop_loaded_elsewhere(lake: Lake, df: DataFrame, spec: SourceSpec, month: str) -> DataFrame:
    """Rows already loaded from another month's delivery are duplicates, not new rows.

    CDRs: only late records (event month M-1, against M-1's own delivery, within the late window) and,
    when M+1 was loaded first, records of M it delivered late can repeat; everything else passes without
    a join. Care contacts: against every other delivery (small).
    """
    keys, source = list(spec.keys), spec.name
    if spec.cross_delivery == "none" or not lake.exists(source):
        return df
    if spec.cross_delivery == "all_deliveries":
        existing = lake.read(source).where(F.col(spec.partition_by[0]) != month).select(*keys)
        return df.join(existing, keys, "left_anti")
    assert spec.event_column and spec.delivery_column and spec.event_month_column
    event_month, delivery_month = F.col(spec.event_month_column), F.col(spec.delivery_column)
    previous = add_months(month, -1)
    held = lake.partition_values(source, spec.event_month_column, spec.delivery_column)
    late_zone = dt.datetime.combine(
        month_start(month) - dt.timedelta(days=lake.cfg.ingest.late_days), dt.time()
    )
    late = df.where(event_month < month)
    current = df.where(event_month >= month)
    if (previous, previous) in held:
        loaded = (
            lake.read(source)
            .where(
                (event_month == previous)
                & (delivery_month != month)
                & (F.col(spec.event_column) >= F.lit(late_zone))
            )
            .select(*keys)
        )
        late = late.join(loaded, keys, "left_anti")
    if any(e == month and d not in (None, month) for e, d in held):
        loaded = lake.read(source).where((event_month == month) & (delivery_month != month))
        current = current.join(loaded.select(*keys), keys, "left_anti")
    return late.unionByName(current)
