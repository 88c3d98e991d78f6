"""Stage: SQL over every lake table, registered as a view under its logical name (``make sql Q=...``).

DuckDB with its Delta extension by default (no Spark, no JVM: an analyst's laptop); ``engine="spark"``
runs the same query with Spark SQL over the same tables (a cluster's lake).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.core.config import Config
from pipelines.core.sql import duckdb_connect

log = logging.getLogger(__name__)


def existing_tables(cfg: Config) -> dict[str, str]:
    """Logical name -> path of every configured table that has been written."""
    out = {}
    for name in cfg.lake.tables:
        path = cfg.table_path(name)
        if Path(path.removeprefix("file://"), "_delta_log").is_dir():
            out[name] = path
    return out


def duckdb_views(cfg: Config) -> Any:
    """A DuckDB connection with one view per lake table (``SELECT * FROM warning_list``)."""
    con = duckdb_connect()
    for name, path in existing_tables(cfg).items():
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM delta_scan('{path}')")
    return con


def run_sql(cfg: Config, query: str, *, engine: str = "duckdb", spark: Any | None = None) -> pd.DataFrame:
    """The query's result as a pandas frame (results are meant to be small: add a LIMIT)."""
    if engine == "duckdb":
        return duckdb_views(cfg).execute(query).df()
    if engine != "spark":
        raise ValueError(f"unknown SQL engine {engine!r}: duckdb or spark")
    from pipelines.core.lake import Lake
    from pipelines.core.spark import get_spark

    spark = spark or get_spark(cfg)
    lake = Lake(spark, cfg)
    for name in existing_tables(cfg):
        lake.read(name).createOrReplaceTempView(name)
    return spark.sql(query).toPandas()


def print_result(result: pd.DataFrame, *, max_rows: int = 50, csv: Path | None = None) -> None:
    """Print the first ``max_rows`` rows as a text table (all of them to ``csv`` when given)."""
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        print(result.head(max_rows).to_string(index=False))
    if len(result) > max_rows:
        print(f"... {len(result) - max_rows} more rows ({len(result)} in all)")
    if csv is not None:
        result.to_csv(csv, index=False)


__all__ = ["duckdb_views", "existing_tables", "print_result", "run_sql"]
