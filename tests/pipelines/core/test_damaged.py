"""A damaged lake gives one line naming the table and the file: an emptied or garbled commit file, a log
without commits, a missing checkpoint, a missing table or data file, a read-only table, a corrupt
``pipeline_runs`` before the monthly run's first stage. Real Delta tables written by delta-rs, no Spark
(the tables are read in this process; the Lake never needs its session for that)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import types as T

from pipelines.core.delta import (
    DamagedTableError,
    LakeTableError,
    MissingTableError,
    TableNotWritableError,
    open_table,
    read_arrow,
    table_exists,
    table_version,
)
from pipelines.core.delta.damage import YOUNG_LOG_SECONDS
from pipelines.core.lake import Lake
from pipelines.monthly import check_recorded_tables, run_monthly

ROWS_SCHEMA = T.StructType([T.StructField("id", T.LongType()), T.StructField("month", T.StringType())])
AS_ROOT = os.geteuid() == 0  # root ignores file modes: the read-only cases cannot happen to it


def commit_file(table: Path, version: int) -> Path:
    return table / "_delta_log" / f"{version:020d}.json"


def two_commits(path: Path) -> Path:
    """A table of three rows over two commits: ids 1, 2 in version 0 and id 3 in version 1."""
    write_deltalake(str(path), pa.table({"id": [1, 2], "month": ["2024-01", "2024-01"]}))
    write_deltalake(str(path), pa.table({"id": [3], "month": ["2024-02"]}), mode="append")
    assert sorted(read_arrow(str(path)).column("id").to_pylist()) == [1, 2, 3]
    return path


def lake_with(make_cfg, *overrides: str) -> Lake:
    """A Lake on the bridge engine; reading in this process and the checks before a write need no Spark."""
    return Lake(None, make_cfg("lake.engine=bridge", *overrides))  # type: ignore[arg-type]


def test_an_emptied_latest_commit_is_named_instead_of_dropping_its_rows(tmp_path: Path):
    table = two_commits(tmp_path / "warning_list")
    commit_file(table, 1).write_bytes(b"")
    # delta-rs alone opens it as version 1 holding only version 0's rows
    assert DeltaTable(str(table)).to_pyarrow_table().num_rows == 2
    with pytest.raises(DamagedTableError) as err:
        read_arrow(str(table))
    assert str(err.value) == (
        f"damaged table warning_list: {commit_file(table, 1)}: empty commit file (0 bytes)"
    )
    with pytest.raises(DamagedTableError, match="empty commit file"):
        table_version(str(table))
    # the version before it is whole, and still readable
    assert sorted(read_arrow(str(table), version=0).column("id").to_pylist()) == [1, 2]


def test_a_garbled_commit_names_the_table_and_the_file_not_a_kernel_error(tmp_path: Path):
    table = two_commits(tmp_path / "features_monthly")
    commit_file(table, 1).write_text('{"commitInfo": {}}\n{"add": {"path": "x.parquet", "si')
    with pytest.raises(DamagedTableError) as err:
        open_table(str(table))
    text = str(err.value)
    assert text == (
        f"damaged table features_monthly: {commit_file(table, 1)}: not a commit file (line 2 is not JSON)"
    )
    assert "Kernel error" not in text and "\n" not in text
    assert err.value.exit_status == 3 and err.value.__cause__ is not None  # delta-rs's own words: the log


def test_the_only_commit_emptied_is_named(tmp_path: Path):
    table = tmp_path / "t"
    write_deltalake(str(table), pa.table({"id": [1]}))
    commit_file(table, 0).write_bytes(b"")
    with pytest.raises(
        DamagedTableError, match=r"damaged table t: .*/_delta_log/0{20}\.json: empty commit file"
    ):
        read_arrow(str(table))


def test_a_commit_file_missing_from_the_log_is_named(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    commit_file(table, 0).unlink()
    with pytest.raises(DamagedTableError) as err:
        read_arrow(str(table))
    assert err.value.file == str(commit_file(table, 0)) and "commit file missing" in err.value.reason


def test_a_log_without_commits_is_damaged_not_an_empty_table(tmp_path: Path, make_cfg):
    table = two_commits(tmp_path / "lake" / "billing")
    for file in (table / "_delta_log").iterdir():
        file.unlink()
    # just emptied: could be a table being created this instant
    assert table_exists(str(table)) is False
    old = time.time() - YOUNG_LOG_SECONDS - 5
    os.utime(table / "_delta_log", (old, old))
    with pytest.raises(DamagedTableError) as err:
        table_exists(str(table))
    assert str(err.value) == (
        f"damaged table billing: {table / '_delta_log'}: no readable commit file in the log"
    )
    lake = lake_with(make_cfg)
    with pytest.raises(DamagedTableError, match=f"damaged table billing: {table / '_delta_log'}"):
        lake.exists("billing")
    # a write does not start a new table over the old files
    with pytest.raises(DamagedTableError, match="no readable commit file"):
        lake.write_rows([(4, "2024-03")], ROWS_SCHEMA, "billing")
    assert list((table / "_delta_log").iterdir()) == []


def test_a_checkpoint_missing_that_last_checkpoint_names_is_named(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    DeltaTable(str(table)).create_checkpoint()
    write_deltalake(str(table), pa.table({"id": [4], "month": ["2024-03"]}), mode="append")
    checkpoint = table / "_delta_log" / f"{1:020d}.checkpoint.parquet"
    assert checkpoint.is_file()
    checkpoint.unlink()
    with pytest.raises(DamagedTableError) as err:
        read_arrow(str(table))
    assert str(err.value) == (
        f"damaged table t: {checkpoint}: checkpoint of version 1 missing (named by _last_checkpoint)"
    )


def test_an_intact_table_with_a_checkpoint_opens_at_every_version(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    DeltaTable(str(table)).create_checkpoint()
    write_deltalake(str(table), pa.table({"id": [4], "month": ["2024-03"]}), mode="append")
    assert [read_arrow(str(table), version=v).num_rows for v in (0, 1, 2)] == [2, 3, 4]
    assert open_table(str(table)).version() == 2


def test_a_missing_table_is_named_by_its_logical_name_and_folder(tmp_path: Path, make_cfg):
    lake = lake_with(make_cfg, "lake.tables.warning_list=lists/warning")
    folder = tmp_path / "lake" / "lists" / "warning"
    with pytest.raises(MissingTableError) as err:
        lake.read_arrow("warning_list")
    assert str(err.value) == f"missing table warning_list: {folder}: no Delta table"
    assert isinstance(err.value, FileNotFoundError)  # what callers of the layer caught before


def test_a_data_file_deleted_under_a_read_is_named(tmp_path: Path, make_cfg):
    lake = lake_with(make_cfg, "lake.tables.warning_list=lists/warning")
    table = two_commits(tmp_path / "lake" / "lists" / "warning")
    victim = sorted(table.glob("*.parquet"))[0]
    victim.unlink()
    with pytest.raises(DamagedTableError) as err:
        lake.read_rows("warning_list")
    assert err.value.table == "warning_list" and err.value.file == str(victim)
    assert str(err.value).startswith(f"damaged table warning_list: {victim}: data file missing")


def test_a_damaged_table_read_through_the_lake_carries_its_logical_name(tmp_path: Path, make_cfg):
    lake = lake_with(make_cfg, "lake.tables.pipeline_runs=history/runs")
    table = two_commits(tmp_path / "lake" / "history" / "runs")
    commit_file(table, 1).write_text("not json\n")
    for call in (lambda: lake.version("pipeline_runs"), lambda: lake.read_rows("pipeline_runs")):
        with pytest.raises(DamagedTableError) as err:
            call()
        assert str(err.value) == (
            f"damaged table pipeline_runs: {commit_file(table, 1)}: not a commit file (line 1 is not JSON)"
        )


@pytest.mark.skipif(AS_ROOT, reason="root ignores file modes")
def test_an_unreadable_commit_file_is_named(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    commit_file(table, 1).chmod(0)
    try:
        with pytest.raises(DamagedTableError) as err:
            read_arrow(str(table))
        assert err.value.file == str(commit_file(table, 1))
        assert err.value.reason == "not readable (permission denied)"
    finally:
        commit_file(table, 1).chmod(0o644)


@pytest.mark.skipif(AS_ROOT, reason="root ignores file modes")
def test_a_read_only_table_refuses_a_write_in_one_line_and_keeps_its_version(tmp_path: Path, make_cfg):
    lake = lake_with(make_cfg)
    table = two_commits(tmp_path / "lake" / "care")
    table.chmod(0o555)
    try:
        with pytest.raises(TableNotWritableError) as err:
            lake.write_rows([(9, "2024-03")], ROWS_SCHEMA, "care")
        assert str(err.value) == (
            f"table not writable care: {table}: permission denied (read-only for this user)"
        )
        assert isinstance(err.value, LakeTableError) and err.value.exit_status == 3
    finally:
        table.chmod(0o755)
    assert lake.version("care") == 1 and lake.read_arrow("care").num_rows == 3


@pytest.mark.skipif(AS_ROOT, reason="root ignores file modes")
def test_a_read_only_partition_folder_found_mid_write_names_the_table(tmp_path: Path, make_cfg):
    """The check before the write passes (table and log writable); the move into the partition folder
    is refused: the engine's PermissionError comes out under the table's name."""
    lake = lake_with(make_cfg)
    table = tmp_path / "lake" / "care"
    lake.replace_rows([(1, "2024-01")], ROWS_SCHEMA, "care", {"month": ["2024-01"]})
    folder = table / "month=2024-01"
    assert folder.is_dir()
    folder.chmod(0o555)
    try:
        with pytest.raises(TableNotWritableError) as err:
            lake.replace_rows([(2, "2024-01")], ROWS_SCHEMA, "care", {"month": ["2024-01"]})
        assert err.value.table == "care" and "permission denied" in str(err.value)
    finally:
        folder.chmod(0o755)
    assert lake.read_arrow("care").column("id").to_pylist() == [1]


def test_a_corrupt_pipeline_runs_stops_the_monthly_run_before_any_stage(tmp_path: Path, make_cfg):
    cfg = make_cfg("lake.engine=bridge")
    runs = two_commits(tmp_path / "lake" / "pipeline_runs")
    commit_file(runs, 1).write_bytes(b"")
    before = sorted(p.name for p in (tmp_path / "lake").iterdir())
    for force in (False, True):
        with pytest.raises(DamagedTableError) as err:
            run_monthly(None, cfg, ["2024-01"], force=force)  # type: ignore[arg-type]
        assert str(err.value) == (
            f"damaged table pipeline_runs: {commit_file(runs, 1)}: empty commit file (0 bytes); restore "
            "that file, or move the table aside (the history restarts and every stage reruns)"
        )
    assert sorted(p.name for p in (tmp_path / "lake").iterdir()) == before  # no stage wrote a table


def test_the_monthly_job_exits_3_with_the_one_line(spark, tmp_path: Path, make_cfg, capsys):
    from jobs.monthly import main
    from tests.conftest import job_args

    cfg = make_cfg()
    runs = two_commits(tmp_path / "lake" / "pipeline_runs")
    commit_file(runs, 0).write_text("{oops\n")
    assert main(["--month", "2024-01", *job_args(cfg)]) == 3
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ERROR")]
    assert errors == [
        f"ERROR monthly: DamagedTableError: damaged table pipeline_runs: {commit_file(runs, 0)}: not a "
        "commit file (line 1 is not JSON); restore that file, or move the table aside (the history "
        "restarts and every stage reruns)"
    ]


def test_moving_a_damaged_pipeline_runs_aside_lets_the_history_restart(tmp_path: Path, make_cfg):
    lake = lake_with(make_cfg)
    runs = two_commits(tmp_path / "lake" / "pipeline_runs")
    commit_file(runs, 1).write_bytes(b"")
    shutil.move(runs, tmp_path / "pipeline_runs.damaged")
    assert lake.version("pipeline_runs") is None and not lake.exists("pipeline_runs")


def test_a_version_the_log_does_not_have_names_the_table_without_calling_it_damaged(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    with pytest.raises(LakeTableError) as err:
        open_table(str(table), 5)
    assert type(err.value) is LakeTableError
    assert str(err.value).startswith(f"table t: {table}: delta-rs cannot open it: ")


def test_a_table_pipeline_runs_records_but_that_is_gone_stops_the_monthly_run(tmp_path: Path, make_cfg):
    cfg = make_cfg("lake.engine=bridge")
    lake = tmp_path / "lake"
    two_commits(lake / "warning_list")
    write_deltalake(
        str(lake / "pipeline_runs"),
        pa.table(
            {
                "stage": ["score", "score", "evaluate"],
                "month": ["2024-01", "2024-02", "2024-02"],
                "status": ["success", "success", "failed"],
                "output_versions": ['{"warning_list": 0}', '{"warning_list": 1}', '{"warning_list": 7}'],
            }
        ),
    )
    check_recorded_tables(lake_with(make_cfg))  # every recorded table is there
    shutil.move(lake / "warning_list", tmp_path / "aside")
    with pytest.raises(MissingTableError) as err:
        run_monthly(None, cfg, ["2024-03"])  # type: ignore[arg-type]
    assert str(err.value) == (
        f"missing table warning_list: {lake / 'warning_list'}: no Delta table, but pipeline_runs records "
        "its version 1 (score of 2024-02)"
    )
    assert sorted(p.name for p in lake.iterdir()) == ["pipeline_runs"]  # no stage ran


def test_a_version_older_than_a_cleaned_log_keeps_is_not_called_damage(tmp_path: Path):
    table = two_commits(tmp_path / "t")
    DeltaTable(str(table)).create_checkpoint()
    for v in (0, 1):
        commit_file(table, v).unlink()  # what a log cleanup after the checkpoint leaves
    assert read_arrow(str(table)).num_rows == 3
    with pytest.raises(LakeTableError) as err:
        open_table(str(table), 0)
    assert type(err.value) is LakeTableError
    assert str(err.value) == f"table t: {table}: version 0 is older than the log keeps (from 1)"
