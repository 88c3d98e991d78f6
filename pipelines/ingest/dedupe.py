"""Duplicates: a record delivered more than once is loaded once.

Within a delivery the last delivered copy wins (latest file, then the last row in it). Across deliveries,
a record already loaded from another month's delivery is a duplicate, not a new row (CDRs: late records
against the previous delivery; care contacts: against every other delivery).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F

from features.calendar import add_months, month_start
from pipelines.core.lake import Lake
from pipelines.ingest.publish import DROPS_SCHEMA
from pipelines.ingest.spec import SourceSpec

MAX_REPEATED = 200_000  # repeated keys collected and broadcast; beyond that, joined by a shuffle
POSITIONS_DDL = "_fid int, _pos long"
_POS_BITS = 40  # a place packed as one integer: file id above, record number below (a trillion records)


def _position() -> Column:
    return F.struct("_fid", "_block", "_pos")


def _repeated(good: DataFrame, keys: list[str], max_repeated: int) -> tuple[DataFrame, list[Row] | None]:
    """The keys that repeat, each with its copies (``_n``) and the positions of its first and last
    delivered copy (``_first``, ``_keep``), and the same collected while at most ``max_repeated`` (None:
    more, left for a shuffle join)."""
    repeated = (
        good.groupBy(*keys)
        .agg(F.count("*").alias("_n"), F.min(_position()).alias("_first"), F.max(_position()).alias("_keep"))
        .where(F.col("_n") > 1)
    )
    found = repeated.limit(max_repeated + 1).collect()
    return repeated, (found if len(found) <= max_repeated else None)


def dedupe_repeated(good: DataFrame, keys: list[str], *, max_repeated: int = MAX_REPEATED) -> DataFrame:
    """Keep the last delivered copy of each key (latest file, then last row in it), in one pass.

    One aggregation finds the keys that repeat and, for each, the position of its last delivered copy;
    every other copy of those keys is filtered out. Usually few: collected and broadcast (more than
    ``max_repeated``: joined by a shuffle instead).
    """
    repeated, found = _repeated(good, keys, max_repeated)
    if found == []:
        return good
    if found is not None:
        repeated = F.broadcast(good.sparkSession.createDataFrame(found, repeated.schema))
    joined = good.join(repeated.select(*keys, "_keep"), keys, "left")
    return joined.where(F.col("_keep").isNull() | (F.col("_keep") == _position())).drop("_keep")


def repeated_positions(good: DataFrame, keys: list[str], *, max_repeated: int = MAX_REPEATED) -> DataFrame:
    """The rows :func:`dedupe_repeated` leaves out, as their positions ``(_fid, _pos)``: for a key
    delivered twice, its first copy, known from the aggregation alone; a key delivered more often
    needs its rows read again."""
    spark = good.sparkSession
    repeated, found = _repeated(good, keys, max_repeated)
    if found is None:  # many: by a shuffle join
        many = repeated
    else:
        twice = [(r._first._fid, r._first._pos) for r in found if r._n == 2]
        more = [r for r in found if r._n > 2]
        out = spark.createDataFrame(twice, POSITIONS_DDL)
        if not more:
            return out
        many = F.broadcast(spark.createDataFrame(more, repeated.schema))
    dropped = good.join(many.select(*keys, "_keep"), keys).where(F.col("_keep") != _position())
    dropped = dropped.select("_fid", "_pos")
    return dropped if found is None else out.unionByName(dropped)


def repeated_positions_arrow(keyed: pa.Table, keys: Sequence[str]) -> pa.Table:
    """:func:`repeated_positions` in this process, over a table of the keys and the places ``_fid``,
    ``_pos`` (one block per file, as the Arrow path stages them): every copy of a repeated key but the
    last delivered, as ``(_fid, _pos)``.

    One hash aggregation of packed places, then a join with the few keys that repeat: a delivery's keys
    in the driver cost a fraction of Spark's shuffle of them on a small cluster (``ingest.
    driver_max_rows`` says up to where).
    """
    keys = list(keys)
    place = pc.add(pc.shift_left(keyed["_fid"].cast(pa.int64()), _POS_BITS), keyed["_pos"].cast(pa.int64()))
    table = keyed.select(keys).append_column("_place", place)
    counted = table.group_by(keys).aggregate([("_place", "count"), ("_place", "max")])
    repeated = counted.filter(pc.greater(counted["_place_count"], 1))
    if repeated.num_rows == 0:
        return DROPS_SCHEMA.empty_table()
    joined = table.join(repeated.select([*keys, "_place_max"]), keys)
    dropped = joined.filter(pc.not_equal(joined["_place"], joined["_place_max"]))["_place"]
    return pa.table(
        [
            pc.shift_right(dropped, _POS_BITS).cast(pa.int32()),
            pc.bit_wise_and(dropped, (1 << _POS_BITS) - 1),
        ],
        schema=DROPS_SCHEMA,
    )


def _loaded_elsewhere(
    lake: Lake, df: DataFrame, spec: SourceSpec, month: str
) -> list[tuple[DataFrame, DataFrame | None]]:
    """``df`` in parts, each with the keys already loaded from other deliveries it must not repeat (None:
    nothing to check).

    CDRs: only late records (event month M-1, against M-1's own delivery, within the late window) and,
    when M+1 was loaded first, records of M it delivered late can repeat; everything else passes without
    a join. Care contacts: against every other delivery (small).
    """
    keys, source = list(spec.keys), spec.name
    if spec.cross_delivery == "none" or not lake.exists(source):
        return [(df, None)]
    if spec.cross_delivery == "all_deliveries":
        existing = lake.read(source).where(F.col(spec.partition_by[0]) != month).select(*keys)
        return [(df, existing)]
    assert spec.event_column and spec.delivery_column and spec.event_month_column
    event_month, delivery_month = F.col(spec.event_month_column), F.col(spec.delivery_column)
    previous = add_months(month, -1)
    held = lake.partition_values(source, spec.event_month_column, spec.delivery_column)
    late_zone = dt.datetime.combine(
        month_start(month) - dt.timedelta(days=lake.cfg.ingest.late_days), dt.time()
    )
    late, late_loaded = df.where(event_month < month), None
    current, current_loaded = df.where(event_month >= month), None
    if (previous, previous) in held:
        late_loaded = (
            lake.read(source)
            .where(
                (event_month == previous)
                & (delivery_month != month)
                & (F.col(spec.event_column) >= F.lit(late_zone))
            )
            .select(*keys)
        )
    if any(e == month and d not in (None, month) for e, d in held):
        loaded = lake.read(source).where((event_month == month) & (delivery_month != month))
        current_loaded = loaded.select(*keys)
    return [(late, late_loaded), (current, current_loaded)]


def drop_loaded_elsewhere(lake: Lake, df: DataFrame, spec: SourceSpec, month: str) -> DataFrame:
    """Rows already loaded from another month's delivery are duplicates, not new rows
    (:func:`_loaded_elsewhere` says which deliveries each row is checked against)."""
    keys = list(spec.keys)
    parts = [
        part if loaded is None else part.join(loaded, keys, "left_anti")
        for part, loaded in _loaded_elsewhere(lake, df, spec, month)
    ]
    out = parts[0]
    for part in parts[1:]:
        out = out.unionByName(part)
    return out


def loaded_elsewhere_positions(lake: Lake, df: DataFrame, spec: SourceSpec, month: str) -> DataFrame | None:
    """The rows :func:`drop_loaded_elsewhere` leaves out, as their positions ``(_fid, _pos)`` (``df``
    holds the keys, the positions and the partition columns); None when no other delivery can hold them."""
    keys = list(spec.keys)
    found = [
        part.join(loaded, keys, "left_semi").select("_fid", "_pos")
        for part, loaded in _loaded_elsewhere(lake, df, spec, month)
        if loaded is not None
    ]
    if not found:
        return None
    out = found[0]
    for part in found[1:]:
        out = out.unionByName(part)
    return out
