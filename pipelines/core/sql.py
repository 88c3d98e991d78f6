"""SQL on the lake without Spark: DuckDB with its Delta extension (delta-kernel-rs), offline from PyPI.

Two doors: :func:`duckdb_connect` for trusted code (notebooks, benchmarks: any path, any statement) and
:func:`read_only_views` for analysts' queries (``make sql``): views over the tables, then no file access
outside the table folders, no extension loading, a locked configuration, and :func:`check_query` admits
exactly one statement that is a query.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class QueryRefusedError(ValueError):
    """An analyst's SQL is not one read-only query (several statements, a COPY, a SET, a write...)."""

    exit_status = 2


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal (a quote in a lake path cannot end it)."""
    return "'" + text.replace("'", "''") + "'"


def sql_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier (DuckDB and ANSI: double quotes, doubled inside)."""
    return '"' + name.replace('"', '""') + '"'


def duckdb_delta_extension() -> Path:
    """Path of ``delta.duckdb_extension`` shipped by the ``duckdb-ext-delta`` package."""
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "duckdb-ext-delta is not installed (pip install 'duckdb==1.4.4' duckdb-ext-delta)"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).rglob("delta.duckdb_extension"))
        if found:
            return found[-1]
    raise FileNotFoundError("delta.duckdb_extension not found in the duckdb_ext package")


# the wheel's extension is not signed by DuckDB: loading it needs unsigned extensions allowed; nothing
# else may be fetched or loaded behind a query's back
_CONNECT = {
    "allow_unsigned_extensions": "true",
    "autoinstall_known_extensions": "false",
    "autoload_known_extensions": "false",
}


def duckdb_connect(database: str = ":memory:") -> Any:
    """A DuckDB connection with the Delta extension loaded, for trusted code:
    ``SELECT * FROM delta_scan('<table path>')``. Analysts' queries go through :func:`read_only_views`."""
    import duckdb

    con = duckdb.connect(database, config=_CONNECT)
    con.execute(f"LOAD {sql_string(str(duckdb_delta_extension()))}")
    return con


def read_only_views(tables: Mapping[str, str]) -> Any:
    """A DuckDB connection holding one view per table (logical name -> table path or ``file://`` URI),
    then locked down: file access only inside the table folders, no extension loading or installing,
    and no setting can be changed back. Run queries on it only after :func:`check_query`: a ``COPY ...
    TO`` into a table folder is file access DuckDB would allow."""
    con = duckdb_connect()
    folders = []
    for name, path in tables.items():
        local = path.removeprefix("file://")
        con.execute(f"CREATE VIEW {sql_identifier(name)} AS SELECT * FROM delta_scan({sql_string(local)})")
        folders.append(local.rstrip("/") + "/")
    con.execute("SET allowed_directories = ?", [folders])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_query(query: str) -> str:
    """``query`` when it is exactly one statement and that statement is a query (SELECT, WITH,
    VALUES, TABLE, FROM-first); else :class:`QueryRefusedError` naming what was found."""
    import duckdb

    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise QueryRefusedError(f"the query does not parse: {' '.join(str(exc).split())}") from None
    if len(statements) != 1:
        raise QueryRefusedError(f"one query at a time: found {len(statements)} statements")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefusedError(f"only queries are run here: found a {kind.name} statement")
    return query


__all__ = [
    "QueryRefusedError",
    "check_query",
    "duckdb_connect",
    "duckdb_delta_extension",
    "read_only_views",
    "sql_identifier",
    "sql_string",
]
