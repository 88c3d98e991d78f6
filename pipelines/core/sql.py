"""SQL on the lake without Spark: DuckDB with its Delta extension (delta-kernel-rs), offline from PyPI."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


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


def duckdb_connect(database: str = ":memory:") -> Any:
    """A DuckDB connection with the Delta extension loaded: ``SELECT * FROM delta_scan('<table path>')``."""
    import duckdb

    con = duckdb.connect(database, config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{duckdb_delta_extension()}'")
    return con
