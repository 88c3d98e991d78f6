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
    columns: Sequence[str],
    make: Callable[[], Callable[[pd.DataFrame], pd.DataFrame]],
    batch_rows: int,
) -> BatchFn:
    """A ``mapInArrow`` function over rows of Parquet file URIs (one string column): each task reads its
    files itself with pyarrow (``columns``, decimals as doubles) and applies ``make()``'s function to
    batches of ``batch_rows``; only the results cross into the JVM, never the input columns."""
    import pyarrow.dataset as ds

    schema = arrow_schema(ddl)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        fn = make()
        for batch in batches:
            for uri in batch.column(0).to_pylist():
                data = ds.dataset(uri, format="parquet")
                held = set(data.schema.names)  # a file older than a column added since holds none of it
                table = data.to_table(columns=[c for c in columns if c in held])
                for c in columns:
                    if c not in held:
                        table = table.append_column(c, pa.nulls(table.num_rows))
                table = arrow_decimals_as_double(table.select(list(columns)))
                for part in table.to_batches(max_chunksize=batch_rows):
                    yield pa.RecordBatch.from_pandas(
                        fn(part.to_pandas()), schema=schema, preserve_index=False
                    )

    return run
