"""The Delta table layer: one API, two engines, one format.

*Bridge* (no Delta jars, the default here): Spark executors write the Parquet files into a staging folder
inside the table; the driver moves them to their partition folders and commits them in **one** atomic
Delta transaction with delta-rs (add actions with partition values and per-file statistics; for
overwrites the remove actions are derived by delta-rs from the partitions replaced). Nothing is visible
before the commit: a failed or killed job leaves the table at its previous version, and its stray files
are removed by :func:`vacuum`.

*Native*: where the ``io.delta`` classes are on the classpath, the same calls use Spark's
``format("delta")``.

Reads resolve the snapshot (optionally an older ``version``) with delta-rs and give Spark the file list,
restoring the partition columns. Every table is opened through :func:`open_table`, which names the table
and the log file at fault when the log is damaged (:class:`DamagedTableError`).
"""

from pipelines.core.delta.damage import (
    DamagedTableError,
    LakeTableError,
    MissingTableError,
    TableNotWritableError,
    check_writable,
    open_table,
    permission_denied,
    vanished_file,
)
from pipelines.core.delta.files import check_schema, file_stats
from pipelines.core.delta.read import count_rows, data_files, read_arrow, read_delta
from pipelines.core.delta.table import (
    STAGING_DIR,
    Engine,
    UnsupportedTableError,
    WriteMode,
    WriteResult,
    native_delta_available,
    partition_columns_of,
    partition_values,
    resolve_engine,
    scratch_folder,
    spark_schema_of,
    table_exists,
    table_history,
    table_version,
)
from pipelines.core.delta.vacuum import vacuum
from pipelines.core.delta.write import WriteConflictError, write_delta, write_files, write_rows

__all__ = [
    "STAGING_DIR",
    "DamagedTableError",
    "Engine",
    "LakeTableError",
    "MissingTableError",
    "TableNotWritableError",
    "UnsupportedTableError",
    "WriteConflictError",
    "WriteMode",
    "WriteResult",
    "check_schema",
    "check_writable",
    "count_rows",
    "data_files",
    "file_stats",
    "native_delta_available",
    "open_table",
    "partition_columns_of",
    "partition_values",
    "permission_denied",
    "read_arrow",
    "read_delta",
    "resolve_engine",
    "scratch_folder",
    "spark_schema_of",
    "table_exists",
    "table_history",
    "table_version",
    "vacuum",
    "vanished_file",
    "write_delta",
    "write_files",
    "write_rows",
]
