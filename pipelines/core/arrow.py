"""``mapInArrow`` functions built from pure pandas functions (scoring, offer values)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa

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
