"""Housekeeping on real Delta tables in temp folders: safe vacuum beside a paused write, compaction,
a bounded log over 36 simulated months, quarantine and log retention, and the stage's rerun."""

from __future__ import annotations

import datetime as dt
import glob
import os
import threading
import time
from pathlib import Path

import pytest
from deltalake import DeltaTable
from pyspark.sql import types as T

from pipelines.core.delta import read_arrow, read_delta, table_version, vacuum, write_rows
from pipelines.core.delta import write as delta_write
from pipelines.core.delta.vacuum import RetentionTooShortError
from pipelines.core.manifest import RUNS_SCHEMA
from pipelines.housekeeping import (
    housekeeping_due,
    housekeeping_month,
    null_quarantine_raw,
    prune_logs,
    tidy_table,
)

SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("month", T.StringType()),
        T.StructField("value", T.LongType()),
    ]
)
QUARANTINE = (
    "source string, month string, file string, row_number bigint, reason string, reasons string, "
    "raw_values string"
)
HOUR = 3600


def _age(root: str | Path, seconds: float) -> None:
    """Move every file and folder under ``root`` ``seconds`` into the past (time passing, simulated)."""
    for name in glob.glob(f"{root}/**", recursive=True):
        st = os.stat(name)
        os.utime(name, (st.st_atime - seconds, st.st_mtime - seconds))


def _rows(path: str) -> list[tuple]:
    return sorted(tuple(r.values()) for r in read_arrow(path).select(["id", "month", "value"]).to_pylist())


def _files(path: str) -> int:
    return len(DeltaTable(path).file_uris())


def _small_table(path: str, months: int = 3, writes: int = 4) -> None:
    for w in range(writes):
        for m in range(1, months + 1):
            rows = [(f"s{w}-{i}", f"2024-0{m}", w * 100 + i) for i in range(5)]
            write_rows(None, rows, SCHEMA, path, partition_by=["month"], engine="bridge")  # type: ignore[arg-type]


def test_a_retention_under_one_hour_is_refused(tmp_path: Path, make_cfg):
    from pipelines.core.config import ConfigError

    path = str(tmp_path / "t")
    _small_table(path, months=1, writes=1)
    for hours in (0, 0.5):
        with pytest.raises(RetentionTooShortError, match="under 1 h"):
            vacuum(path, retention_hours=hours)
    with pytest.raises(ConfigError, match="vacuum_retention_hours"):
        make_cfg("lake.housekeeping.vacuum_retention_hours=0")
    assert vacuum(path, retention_hours=1) == []


def test_staging_folders_go_only_once_everything_in_them_is_older_than_the_retention(tmp_path: Path):
    path = str(tmp_path / "t")
    _small_table(path, months=1, writes=1)
    staging = tmp_path / "t" / "_staging"
    stale, busy = staging / "stale", staging / "busy"
    for folder in (stale, busy):
        (folder / "month=2024-01").mkdir(parents=True)
        (folder / "month=2024-01" / "part-0.parquet").write_bytes(b"PAR1junk")
    _age(stale, 2 * HOUR)
    _age(busy, 2 * HOUR)
    (busy / "month=2024-01" / "part-1.parquet").write_bytes(b"PAR1")  # a Spark task still writing deep inside
    removed = vacuum(path, retention_hours=1)
    assert [Path(r).name for r in removed] == ["stale"]
    assert not stale.exists() and busy.exists()


def test_vacuum_racing_a_write_paused_between_move_and_commit_leaves_it_whole(tmp_path: Path, monkeypatch):
    path = str(tmp_path / "t")
    _small_table(path, months=2, writes=1)
    before = _rows(path)
    moved_in, resume = threading.Event(), threading.Event()
    seen: list[str] = []

    def pause(files: list[str]) -> None:
        seen.extend(files)
        for f in files:  # the worst case: files that look older than the retention (a stalled write)
            os.utime(f, (time.time() - 2 * HOUR, time.time() - 2 * HOUR))
        moved_in.set()
        assert resume.wait(60)

    monkeypatch.setattr(delta_write, "_AFTER_MOVE", pause)
    new = [(f"n{i}", "2024-02", 900 + i) for i in range(7)]
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write_rows(None, new, SCHEMA, path, engine="bridge")  # type: ignore[arg-type]
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    assert moved_in.wait(60)
    # without the in-flight guard delta-rs would delete the moved file: it is referenced by no version
    listed = DeltaTable(path).vacuum(
        retention_hours=1, dry_run=True, enforce_retention_duration=False, full=True
    )
    assert {Path(f).name for f in listed} == {Path(f).name for f in seen}
    removed = vacuum(path, retention_hours=1)
    assert removed == []
    assert all(os.path.exists(f) for f in seen)
    resume.set()
    thread.join(60)
    assert not errors
    assert table_version(path) == 2  # two writes before, then this one
    assert _rows(path) == sorted(before + new)
    assert len(DeltaTable(path).to_pyarrow_table()) == len(before) + len(new)


def test_a_moved_file_is_aged_from_its_move_not_from_when_it_was_staged(tmp_path: Path, monkeypatch):
    path = str(tmp_path / "t")
    stamps: list[float] = []
    monkeypatch.setattr(
        delta_write, "_AFTER_MOVE", lambda files: stamps.extend(os.stat(f).st_mtime for f in files)
    )
    original = delta_write._stage_to_table

    def stale_staging(fs, root, staging, *args, **kwargs):  # Spark wrote them two hours ago
        _age(staging, 2 * HOUR)
        return original(fs, root, staging, *args, **kwargs)

    monkeypatch.setattr(delta_write, "_stage_to_table", stale_staging)
    write_rows(None, [("a", "2024-01", 1)], SCHEMA, path, partition_by=["month"], engine="bridge")  # type: ignore[arg-type]
    assert stamps and all(time.time() - s < 60 for s in stamps)


def test_compaction_keeps_the_rows_and_cuts_the_files_and_every_reader_reads_it(
    spark, tmp_path: Path, make_cfg
):
    from pipelines.core.sql import duckdb_connect

    path = str(tmp_path / "t")
    _small_table(path, months=3, writes=4)
    before, files = _rows(path), _files(path)
    assert files == 12
    hk = make_cfg().lake.housekeeping
    report = tidy_table(path, hk)
    assert (report.files_compacted, report.files_written) == (12, 3)  # one file per partition
    assert _files(path) == 3
    assert _rows(path) == before
    spark_rows = sorted(tuple(r) for r in read_delta(spark, path).select("id", "month", "value").collect())
    assert spark_rows == before
    con = duckdb_connect()
    duck = con.sql(f"SELECT id, month, value FROM delta_scan('{path}') ORDER BY ALL").fetchall()
    assert sorted(duck) == before
    version = table_version(path)
    again = tidy_table(path, hk)  # nothing left to do: no commit
    assert (again.files_compacted, again.files_vacuumed, again.checkpoint) == (0, 0, None)
    assert table_version(path) == version


def test_36_months_keep_the_log_bounded_and_the_run_records_quick_to_read(spark, tmp_path: Path, make_cfg):
    """Each month: ten run records (a commit each) and a replaced partition, then housekeeping; then a
    month passes (every file ages 31 days)."""
    runs, table = str(tmp_path / "pipeline_runs"), str(tmp_path / "features")
    hk = make_cfg().lake.housekeeping
    runs_schema = T._parse_datatype_string(RUNS_SCHEMA)
    commits = 0
    for m in range(36):
        month = f"{2024 + m // 12}-{m % 12 + 1:02d}"
        for s in range(10):
            row = tuple(
                {"run_id": f"{m}-{s}", "stage": f"stage{s}", "month": month}.get(f.name)
                for f in runs_schema.fields
            )
            write_rows(None, [row], runs_schema, runs, engine="bridge")  # type: ignore[arg-type]
            commits += 1
        rows = [(f"s{i}", month, m) for i in range(20)]
        write_rows(
            None,
            rows,
            SCHEMA,
            table,
            mode="overwrite",
            partition_by=["month"],  # type: ignore[arg-type]
            replace_partitions={"month": [month]},
            engine="bridge",
        )
        for path in (runs, table):
            tidy_table(path, hk)
            assert len(glob.glob(f"{path}/_delta_log/*.json")) < 150, (month, path)
        _age(tmp_path, 31 * 24 * HOUR)
    assert commits == 360 and table_version(runs) >= 360  # the log would hold that many commit files
    for path in (runs, table):
        assert len(glob.glob(f"{path}/_delta_log/*.json")) < 30
    t0 = time.perf_counter()
    records = read_arrow(runs).to_pylist()
    assert time.perf_counter() - t0 < 1.0
    assert len(records) == 360 and {r["run_id"] for r in records} == {
        f"{m}-{s}" for m in range(36) for s in range(10)
    }
    assert len(read_arrow(table)) == 36 * 20
    from pipelines.core.sql import duckdb_connect

    con = duckdb_connect()  # DuckDB and the bridge's Spark read start from the checkpoint too
    assert con.sql(f"SELECT count(*), count(DISTINCT month) FROM delta_scan('{table}')").fetchall() == [
        (720, 36)
    ]
    assert read_delta(spark, runs).count() == 360
    with pytest.raises(
        Exception, match=r"No files in log segment|older than the log keeps"
    ):  # its commit files are gone
        read_arrow(runs, version=0)


def _quarantine(spark, make_cfg):
    from pipelines.core.lake import Lake

    lake = Lake(spark, make_cfg())
    for source in ("subscriptions", "cdr"):
        for month in ("2024-01", "2024-02", "2024-05"):
            rows = [
                (source, month, "f.csv", i, "unparseable:x", "unparseable:x", f'{{"msisdn": "4670{i}"}}')
                for i in range(3)
            ]
            lake.replace_rows(rows, QUARANTINE, "quarantine", {"source": [source], "month": [month]})
    return lake


def test_quarantine_raw_values_are_nulled_after_their_retention_once(spark, make_cfg):
    lake = _quarantine(spark, make_cfg)
    days = lake.cfg.lake.housekeeping.quarantine_raw_days
    assert days == 90
    # run month 2024-05 (as of June 1): 90 days back is March 3; January and February ended before it
    assert null_quarantine_raw(lake, as_of=dt.date(2024, 6, 1)) == ["2024-01", "2024-02"]
    rows = lake.read_arrow("quarantine").to_pylist()
    assert len(rows) == 18
    for r in rows:
        assert (r["raw_values"] is None) == (r["month"] in ("2024-01", "2024-02")), r
        assert r["reason"] == "unparseable:x" and r["file"] == "f.csv"
    version = lake.version("quarantine")
    assert null_quarantine_raw(lake, as_of=dt.date(2024, 6, 1)) == []  # already nulled: no commit
    assert lake.version("quarantine") == version


def test_job_logs_beyond_the_count_or_age_are_removed(make_cfg):
    cfg = make_cfg("lake.housekeeping.keep_logs=5", "lake.housekeeping.keep_logs_days=10")
    folder = Path(cfg.lake_root) / "_logs"
    folder.mkdir(parents=True)
    now = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    for day in range(8):  # one a day, newest first: days 0..7 old, and two 30 and 40 days old
        path = folder / f"monthly-{day}.log"
        path.write_text("x")
        t = (now - dt.timedelta(days=day, hours=1)).timestamp()
        os.utime(path, (t, t))
    for day in (30, 40):
        path = folder / f"monthly-{day}.log"
        path.write_text("x")
        t = (now - dt.timedelta(days=day)).timestamp()
        os.utime(path, (t, t))
    assert prune_logs(cfg, now=now) == 5
    assert sorted(p.name for p in folder.iterdir()) == [f"monthly-{d}.log" for d in range(5)]
    cfg = make_cfg("lake.housekeeping.keep_logs=50", "lake.housekeeping.keep_logs_days=2")
    assert prune_logs(cfg, now=now) == 3  # days 2, 3, 4 are older than two days
    assert sorted(p.name for p in folder.iterdir()) == ["monthly-0.log", "monthly-1.log"]


def test_the_stage_records_what_it_wrote_and_a_second_pass_writes_nothing(spark, make_cfg):
    lake = _quarantine(spark, make_cfg)
    write_rows(
        None,
        [("a", "2024-05", 1)],
        SCHEMA,
        lake.path("features_monthly"),
        partition_by=["month"],
        engine="bridge",
    )  # type: ignore[arg-type]
    write_rows(None, [("b", "2024-05", 2)], SCHEMA, lake.path("features_monthly"), engine="bridge")  # type: ignore[arg-type]
    now = dt.datetime(2024, 6, 2, tzinfo=dt.UTC)
    first = housekeeping_month(lake, "2024-05", now=now)
    assert first.quarantine_months_nulled == ["2024-01", "2024-02"]
    assert first.tables["features_monthly"].files_compacted == 2
    assert set(first.output_versions) == {"quarantine", "features_monthly"}  # pipeline_runs: its own record
    assert first.output_versions == {t: lake.version(t) for t in first.output_versions}
    versions = lake.versions(["quarantine", "features_monthly"])
    second = housekeeping_month(lake, "2024-05", now=now)
    assert set(second.output_versions) <= {"pipeline_runs"}  # only the first pass's own run record
    assert lake.versions(["quarantine", "features_monthly"]) == versions
    runs = [r for r in lake.read_rows("pipeline_runs") if r["stage"] == "housekeeping"]
    assert len(runs) == 2 and all(r["status"] == "success" for r in runs)


def test_the_schedule_and_the_job(spark, make_cfg):
    from jobs.housekeeping import main
    from tests.conftest import job_args

    cfg = make_cfg()
    assert housekeeping_due(cfg, "2024-05")
    quarterly = make_cfg("lake.housekeeping.every_months=3")
    assert [m for m in ("2024-01", "2024-02", "2024-03", "2024-04") if housekeeping_due(quarterly, m)] == [
        "2024-01",
        "2024-04",
    ]
    assert housekeeping_due(make_cfg("lake.housekeeping.every_months=0"), "2024-01") is None
    path = cfg.table_path("features_monthly")
    _small_table(path, months=1, writes=3)
    assert main(["--month", "2024-05", *job_args(cfg)]) == 0
    assert _files(path) == 1


def test_compacted_spark_files_read_back_with_every_type(spark, tmp_path: Path, make_cfg):
    """Silver tables hold decimals, timestamps, dates and booleans written by Spark: delta-rs rewrites
    them and the bridge's Spark read gives the same frame."""
    from pyspark.testing import assertDataFrameEqual

    from pipelines.core.delta import write_delta
    from tests.pipelines.core.test_delta import SCHEMA as RICH
    from tests.pipelines.core.test_delta import rows

    path = str(tmp_path / "t")
    for ids in (["a", "b"], ["c"], ["d", "e", None]):
        write_delta(spark.createDataFrame(rows("2024-01", ids), RICH), path, partition_by=["month"])
    expected = read_delta(spark, path).collect()
    report = tidy_table(path, make_cfg().lake.housekeeping)
    assert report.files_compacted >= 3 and _files(path) == 1
    assertDataFrameEqual(read_delta(spark, path), spark.createDataFrame(expected, RICH))
