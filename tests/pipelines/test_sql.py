"""The analyst's SQL door is read-only: one query, no file outside the tables, no write, no setting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.core.sql import QueryRefusedError, check_query, sql_identifier, sql_string
from pipelines.sql import run_sql
from tests.conftest import ROOT, cfg_at, job_args


def _warning_list_at(root: Path):
    cfg = cfg_at(root, root.parent / "landing")
    write_deltalake(
        cfg.table_path("warning_list"),
        pa.table(
            {"subscriber_id": ["s1", "s2"], "risk_band": ["high", "low"], "churn_probability": [0.8, 0.1]}
        ),
    )
    return cfg


@pytest.fixture
def sql_cfg(tmp_path):
    """A lake whose root holds a quote, with a two-row warning_list."""
    return _warning_list_at(tmp_path / "it's lake")


def _log_file(cfg) -> Path:
    return Path(cfg.table_path("warning_list").removeprefix("file://"), "_delta_log", f"{0:020d}.json")


def test_a_query_reads_the_views_under_a_lake_root_with_a_quote(sql_cfg):
    result = run_sql(sql_cfg, "SELECT risk_band, churn_probability FROM warning_list ORDER BY 1")
    assert result.values.tolist() == [["high", 0.8], ["low", 0.1]]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1; COPY (SELECT 1) TO '{log}'",
        "COPY (SELECT 1 AS a) TO '{log}' (FORMAT json)",
        "SET enable_external_access = true",
        "ATTACH '{tmp}/other.db'",
        "INSTALL httpfs",
        "CREATE TABLE t AS SELECT 1",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '{log}'",
        "",
    ],
)
def test_what_is_not_one_query_is_refused_and_the_commit_log_is_untouched(sql_cfg, tmp_path, query):
    before = _log_file(sql_cfg).read_bytes()
    with pytest.raises(QueryRefusedError) as refused:
        run_sql(sql_cfg, query.format(log=_log_file(sql_cfg), tmp=tmp_path))
    assert "statement" in str(refused.value) or "parse" in str(refused.value)
    assert _log_file(sql_cfg).read_bytes() == before
    assert DeltaTable(sql_cfg.table_path("warning_list")).to_pyarrow_table().num_rows == 2


def test_files_outside_the_tables_cannot_be_read(sql_cfg, tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    for query in (f"SELECT * FROM read_csv({sql_string(str(secret))})", "SELECT * FROM glob('/etc/*')"):
        with pytest.raises(duckdb.PermissionException):
            run_sql(sql_cfg, query)


def test_check_query_admits_the_forms_of_a_query():
    for query in ("SELECT 1", "WITH a AS (SELECT 1 AS x) SELECT x FROM a", "FROM warning_list", "VALUES (1)"):
        assert check_query(query) == query
    with pytest.raises(QueryRefusedError, match="found 2 statements"):
        check_query("SELECT 1; SELECT 2")


def test_quoting_helpers_double_their_quote():
    assert sql_string("it's") == "'it''s'"
    assert sql_identifier('a"b') == '"a""b"'


def test_the_spark_engine_runs_queries_only(spark, tmp_path):
    sql_cfg = _warning_list_at(tmp_path / "lake")
    result = run_sql(sql_cfg, "SELECT count(*) AS n FROM warning_list", engine="spark", spark=spark)
    assert result["n"].tolist() == [2]
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    refused = [
        "INSERT INTO warning_list VALUES ('s3', 'high', 0.9)",
        "CREATE TABLE t AS SELECT 1",
        "DROP VIEW warning_list",
        "SET spark.sql.runSQLOnFiles=true",
        "ADD JAR /tmp/x.jar",
        f"INSERT OVERWRITE DIRECTORY '{tmp_path}/out' SELECT 1",
        "SELECT reflect('java.lang.System', 'getProperty', 'user.home')",
        "SELECT 1; SELECT 2",
    ]
    for query in refused:
        with pytest.raises(QueryRefusedError):
            run_sql(sql_cfg, query, engine="spark", spark=spark)
    with pytest.raises(Exception, match=r"(?i)table or view"):
        run_sql(sql_cfg, f"SELECT * FROM csv.`{secret}`", engine="spark", spark=spark)
    assert spark.conf.get("spark.sql.runSQLOnFiles") == "true"  # restored for the session's other users
    assert not (tmp_path / "out").exists()


def test_the_job_exits_2_with_one_line_for_a_refused_query(sql_cfg, capsys):
    from jobs.sql import main

    status = main(["--query", "SELECT 1; DROP VIEW warning_list", *job_args(sql_cfg)])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert status == 2
    assert err == ["ERROR sql: QueryRefusedError: one query at a time: found 2 statements"]


def test_the_job_reads_the_query_from_the_environment(sql_cfg, capsys, monkeypatch):
    from jobs.sql import main

    monkeypatch.setenv("ANALYST_Q", "SELECT risk_band FROM warning_list WHERE churn_probability > 0.5")
    assert main(["--query-env", "ANALYST_Q", *job_args(sql_cfg)]) == 0
    assert capsys.readouterr().out.split() == ["risk_band", "high"]


def _make_sql(cfg, query: str) -> subprocess.CompletedProcess:
    sets = " ".join(job_args(cfg)[3:][::2])  # the two lake.root= / landing.root= overrides
    return subprocess.run(
        ["make", "-s", "sql", f"Q={query}", f"SET={sets}", f"CONF={ROOT / 'conf' / 'test.yml'}"],
        cwd=ROOT,
        env={**os.environ, "MAKEFLAGS": ""},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_make_sql_passes_q_through_the_environment_not_the_shell(tmp_path):
    """A quote and a ``$`` in Q reach the query as written; nothing in Q runs in the shell."""
    cfg = _warning_list_at(tmp_path / "lake")  # SET= is split on spaces: a plain root
    planted = tmp_path / "pwned"
    run = _make_sql(cfg, f'SELECT 1 AS x" ; touch {planted} ; echo "')
    assert run.returncode == 2, run.stderr
    assert not planted.exists()
    run = _make_sql(cfg, "SELECT 'it''s $HOME' AS said, count(*) AS n FROM warning_list")
    assert run.returncode == 0, run.stderr
    assert "it's $HOME" in run.stdout and run.stdout.split()[-1] == "2"
