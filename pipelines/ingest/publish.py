"""The Arrow path's second pass: each staged file's good rows, less the duplicates the key pass found,
written by a Spark task in its Python worker as the silver table's own files (``col=value`` folders).

The rows cross into the JVM neither way: the driver commits the files (:func:`pipelines.core.delta.
write_files`), and Spark reads back only what the gates measure.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipelines.core.arrow import BatchFn

PUBLISHED_DDL = "fid int, rows long, files string"
DROPS_SCHEMA = pa.schema([("_fid", pa.int32()), ("_pos", pa.int64())])
_BATCH_ROWS = 256 * 1024  # staged rows read at a time: bounds a task's memory whatever the file's size


@dataclass(frozen=True)
class PublishPlan:
    """What every task needs, made on the driver (plain data: it is pickled to the workers)."""

    month: str
    staged: tuple[tuple[int, str], ...]  # (file id, staged Parquet file) per task
    drops: str | None  # a Parquet file of (_fid, _pos): rows to leave out (duplicates), or None
    schema: pa.Schema  # the table's columns, partition columns last
    partition_by: tuple[str, ...]
    event_column: str | None  # its month becomes ``event_month_column``
    event_month_column: str | None
    delivery_column: str | None  # the delivery month (``month``)
    target: str  # the write's staging folder (local: executors share it with the driver)


def _dropped(plan: PublishPlan, fid: int) -> pa.Array | None:
    if plan.drops is None:
        return None
    table = pq.read_table(plan.drops, filters=[("_fid", "=", fid)], columns=["_pos"])
    return table["_pos"].combine_chunks() if table.num_rows else None


def event_months(ts: pa.Array) -> pa.Array:
    """``yyyy-MM`` of each (UTC) timestamp, as Spark's ``date_format`` in a UTC session gives it."""
    months = np.asarray(ts.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    months = months.astype("datetime64[us]").astype("datetime64[M]").astype(np.int64)
    first = int(months.min())
    names = np.datetime_as_string(np.arange(first, int(months.max()) + 1).astype("datetime64[M]"), unit="M")
    return pa.DictionaryArray.from_arrays(
        pa.array(months - first, pa.int32()), pa.array(names.tolist(), pa.string())
    ).cast(pa.string())


def publish_file(plan: PublishPlan, fid: int, path: str) -> tuple[int, list[str]]:
    """Write one staged file of good rows as table files, less the dropped ones; the rows and the files
    written (a retried task's first attempt may have left others: the driver commits only these)."""
    made = (plan.event_month_column, plan.delivery_column)  # columns the pass adds; the rest are read
    read = [f.name for f in plan.schema if f.name not in made]  # the event column is a data column
    dropped = _dropped(plan, fid)
    written = 0
    files: list[str] = []

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal written
        with pq.ParquetFile(path) as source:
            for batch in source.iter_batches(_BATCH_ROWS, columns=[*read, "_pos"]):
                rows = batch
                if dropped is not None:
                    rows = batch.filter(pc.invert(pc.is_in(batch.column("_pos"), value_set=dropped)))
                if rows.num_rows == 0:
                    continue
                values = {c: rows.column(c) for c in read}
                if plan.event_month_column:
                    values[plan.event_month_column] = event_months(values[plan.event_column])
                if plan.delivery_column:
                    values[plan.delivery_column] = pa.repeat(pa.scalar(plan.month), rows.num_rows)
                written += rows.num_rows
                yield pa.RecordBatch.from_arrays(
                    [values[f.name].cast(f.type) for f in plan.schema], schema=plan.schema
                )

    ds.write_dataset(
        batches(),
        plan.target,
        schema=plan.schema,
        format="parquet",
        partitioning=ds.partitioning(
            pa.schema([plan.schema.field(c) for c in plan.partition_by]), flavor="hive"
        ),
        basename_template=f"part-{fid:05d}-{uuid.uuid4().hex[:8]}-{{i}}.snappy.parquet",
        existing_data_behavior="overwrite_or_ignore",
        use_threads=False,  # one task, one core: Spark runs the files side by side
        file_options=ds.ParquetFileFormat().make_write_options(compression="snappy"),
        file_visitor=lambda written_file: files.append(written_file.path),
    )
    return written, files


def publish_files(plan: PublishPlan) -> BatchFn:
    """The ``mapInArrow`` function over ``spark.range``: row ``i`` publishes ``plan.staged[i]`` and is
    answered by one row (``PUBLISHED_DDL``)."""
    out = pa.schema([("fid", pa.int32()), ("rows", pa.int64()), ("files", pa.string())])

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for fid, path in (plan.staged[i] for i in batch.column(0).to_pylist()):
                rows, files = publish_file(plan, fid, path)
                row = {"fid": [fid], "rows": [rows], "files": [json.dumps(files)]}
                yield pa.RecordBatch.from_pydict(row, schema=out)

    return run
