"""``mapInArrow`` functions built from pure pandas functions (scoring, offer values)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

BatchFn = Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]


def arrow_schema(ddl: str) -> pa.Schema:
    """The Arrow schema of a DDL string (parsed on the driver: workers have no session)."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import _parse_datatype_string

    return to_arrow_schema(_parse_datatype_string(ddl))


def pandas_batches(ddl: str, make: Callable[[], Callable[[pd.DataFrame], pd.DataFrame]]) -> BatchFn:
    """A ``mapInArrow`` function: ``make()`` once per task (load a model there), then the function it
    returns on each batch as pandas; its frames must match ``ddl``, the schema given to ``mapInArrow``."""
    schema = arrow_schema(ddl)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fn = make()
        for batch in batches:
            yield pa.RecordBatch.from_pandas(fn(batch.to_pandas()), schema=schema, preserve_index=False)

    return run


def arrow_decimals_as_double(table: pa.Table) -> pa.Table:
    """Decimal columns as doubles, each the double nearest the decimal, as Spark's cast gives it."""
    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type):  # through text: Arrow's direct cast is not correctly rounded
            doubles = pc.cast(pc.cast(table.column(i), pa.string()), pa.float64())
            table = table.set_column(i, pa.field(f.name, pa.float64(), f.nullable), doubles)
    return table


def file_batches(
    ddl: str,
    files: Sequence[str],
    columns: Sequence[str],
    make: Callable[[], Callable[[pd.DataFrame], pd.DataFrame]],
    batch_rows: int,
) -> BatchFn:
    """A ``mapInArrow`` function over rows of indexes into ``files`` (Parquet URIs; one integer column, as
    ``spark.range`` gives): each task streams its files itself with pyarrow (``columns``, decimals as
    doubles) in batches of up to ``batch_rows`` (a task holds one batch, not the file) and applies
    ``make()``'s function to each; only the results cross into the JVM, never the input columns. The
    indexes, not the URIs, are the input: a range needs no Python pass of its own before the tasks."""
    import pyarrow.dataset as ds

    schema = arrow_schema(ddl)
    uris = tuple(files)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fn = make()
        for batch in batches:
            for uri in (uris[i] for i in batch.column(0).to_pylist()):
                data = ds.dataset(uri, format="parquet")
                held = [c for c in columns if c in data.schema.names]  # an older file lacks newer columns
                for part in data.to_batches(columns=held, batch_size=batch_rows):
                    table = pa.Table.from_batches([part])
                    for c in columns:
                        if c not in held:
                            table = table.append_column(c, pa.nulls(table.num_rows))
                    table = arrow_decimals_as_double(table.select(list(columns)))
                    yield pa.RecordBatch.from_pandas(
                        fn(table.to_pandas()), schema=schema, preserve_index=False
                    )

    return run


STAGED_DDL = "file string, rows long"


def parquet_writer(fn: BatchFn, ddl: str, target: str) -> BatchFn:
    """A ``mapInArrow`` function that writes what ``fn`` yields (rows of ``ddl``) into one Parquet file per
    task under ``target`` (a URI) with pyarrow, streaming batch by batch, and yields one row per task: the
    file (null when the task had no rows) and its rows (:data:`STAGED_DDL`).

    For results that are only written, Spark's Parquet writer and its commit cost more than the work that
    made the rows (the score stage of ``make bench`` compares the two). A file is named by its partition and
    attempt, so a retried task never overwrites nor adds to another attempt's rows: readers take exactly the
    files the finished tasks report (:func:`write_staged`)."""
    import uuid

    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from pipelines.core.spark import require_seen

    schema = arrow_schema(ddl)
    out = arrow_schema(STAGED_DDL)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        context = TaskContext.get()
        name = (
            f"part-{context.partitionId():05d}-{context.attemptNumber()}-{uuid.uuid4().hex[:8]}.parquet"
            if context is not None
            else f"part-{uuid.uuid4().hex}.parquet"
        )
        fs, root = pafs.FileSystem.from_uri(target)
        path = f"{root.rstrip('/')}/{name}"
        writer, rows = None, 0
        try:
            for batch in fn(batches):
                if batch.num_rows == 0:
                    continue
                if writer is None:
                    if isinstance(fs, pafs.LocalFileSystem):  # made by the driver: never this host's own
                        require_seen(root, "the write's staging folder")
                    writer = pq.ParquetWriter(path, schema, filesystem=fs)
                writer.write_batch(batch)
                rows += batch.num_rows
        finally:
            if writer is not None:
                writer.close()
        file = f"{target.rstrip('/')}/{name}" if rows else None
        yield pa.RecordBatch.from_pydict({"file": [file], "rows": [rows]}, schema=out)

    return run


def write_staged(source: DataFrame, fn: BatchFn, ddl: str, target: str) -> DataFrame:
    """Run ``fn`` over ``source`` (``mapInArrow``), its rows written to ``target`` by the tasks themselves
    (:func:`parquet_writer`), and return them read back: a DataFrame over exactly the files the tasks
    reported (none: an empty frame of ``ddl``). ``target`` is a scratch folder the caller removes
    (:func:`pipelines.core.delta.scratch_folder`)."""
    import pyarrow.fs as pafs

    target = target if "://" in target else f"file://{target}"
    fs, root = pafs.FileSystem.from_uri(target)
    fs.create_dir(root, recursive=True)  # here, where the driver can see it; the tasks check they do
    staged = source.mapInArrow(parquet_writer(fn, ddl, target), STAGED_DDL).collect()
    files = [r.file for r in staged if r.file]
    spark = source.sparkSession
    if not files:
        return spark.createDataFrame([], ddl)
    return spark.read.schema(ddl).parquet(*files)
