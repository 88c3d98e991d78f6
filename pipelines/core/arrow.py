"""``mapInArrow`` functions built from pure pandas functions (scoring, offer values)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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
