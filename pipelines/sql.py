"""Stage: SQL over every lake table, registered as a view under its logical name (``make sql Q=...``).

DuckDB with its Delta extension by default (no Spark, no JVM: an analyst's laptop); ``engine="spark"``
runs the same query with Spark SQL over the same tables (a cluster's lake).

Read-only on both engines: exactly one statement that is a query; DuckDB's views are made before file
access outside the table folders is switched off and its configuration locked
(:func:`pipelines.core.sql.read_only_views`); Spark SQL refuses commands, inserts, SQL on files and
calls of Java methods (:func:`check_spark_query`).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.core.config import Config
from pipelines.core.runner import one_line
from pipelines.core.sql import QueryRefusedError, check_query, read_only_views

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
    """A read-only DuckDB connection with one view per lake table (``SELECT * FROM warning_list``): no
    file outside the tables can be read or written, no extension loaded, no setting changed."""
    return read_only_views(existing_tables(cfg))


# Spark's parsed plans that only read (anything else, a Command or an insert, is refused)
_SPARK_WRITES = ("InsertIntoStatement", "InsertIntoDir", "OverwriteByExpression", "AppendData")
# functions that call any static Java method on the driver
_SPARK_REFLECTION = re.compile(r"\b(reflect|java_method|try_reflect)\s*\(", re.IGNORECASE)


def check_spark_query(spark: Any, query: str) -> str:
    """``query`` when Spark parses it as one query; else :class:`QueryRefusedError`.

    Commands (SET, CREATE, DROP, CACHE, ADD JAR, ...) and inserts are refused by the class of the parsed
    plan; reflection functions by name (they run arbitrary static Java methods)."""
    jvm = spark.sparkContext._jvm
    try:
        plan = spark._jsparkSession.sessionState().sqlParser().parsePlan(query)
    except Exception as exc:  # a ParseException from the JVM: its message names the position
        raise QueryRefusedError(f"the query does not parse: {one_line(exc)}") from None
    command = jvm.java.lang.Class.forName("org.apache.spark.sql.catalyst.plans.logical.Command")
    kind = plan.getClass().getSimpleName()
    if command.isInstance(plan) or kind in _SPARK_WRITES:
        raise QueryRefusedError(f"only queries are run here: found {kind}")
    if _SPARK_REFLECTION.search(plan.toString()):
        raise QueryRefusedError("reflect / java_method are not allowed in queries")
    return query


def query_from_env(name: str) -> str:
    """The query held by environment variable ``name`` (``make sql`` passes ``Q`` so, past the shell)."""
    query = os.environ.get(name, "")
    if not query.strip():
        raise QueryRefusedError(f"no query: ${name} is empty or unset")
    return query


def run_sql(cfg: Config, query: str, *, engine: str = "duckdb", spark: Any | None = None) -> pd.DataFrame:
    """The query's result as a pandas frame (results are meant to be small: add a LIMIT).

    Only one read-only query is run (:class:`QueryRefusedError` otherwise, exit status 2 from the job)."""
    if engine == "duckdb":
        return duckdb_views(cfg).execute(check_query(query)).df()
    if engine != "spark":
        raise ValueError(f"unknown SQL engine {engine!r}: duckdb or spark")
    from pipelines.core.lake import Lake
    from pipelines.core.spark import get_spark

    spark = spark or get_spark(cfg)
    check_spark_query(spark, query)
    lake = Lake(spark, cfg)
    for name in existing_tables(cfg):
        lake.read(name).createOrReplaceTempView(name)
    # SQL on files (SELECT * FROM csv.`/etc/passwd`) reads outside the lake: off while the query runs
    previous = spark.conf.get("spark.sql.runSQLOnFiles", "true")
    spark.conf.set("spark.sql.runSQLOnFiles", "false")
    try:
        return spark.sql(query).toPandas()
    finally:
        spark.conf.set("spark.sql.runSQLOnFiles", previous)


def print_result(result: pd.DataFrame, *, max_rows: int = 50, csv: Path | None = None) -> None:
    """Print the first ``max_rows`` rows as a text table (all of them to ``csv`` when given)."""
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 60):
        print(result.head(max_rows).to_string(index=False))
    if len(result) > max_rows:
        print(f"... {len(result) - max_rows} more rows ({len(result)} in all)")
    if csv is not None:
        result.to_csv(csv, index=False)


__all__ = [
    "QueryRefusedError",
    "check_spark_query",
    "duckdb_views",
    "existing_tables",
    "print_result",
    "query_from_env",
    "run_sql",
]
