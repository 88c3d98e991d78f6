"""A job killed (SIGKILL: no handler, no ``finally``) at any point of its writes leaves every table at its
old or its new version, readable by delta-rs and DuckDB, and a rerun makes the lake equal to a run that
was never interrupted (:mod:`pipelines.core.faults` names the points)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from deltalake import DeltaTable

from pipelines.core.config import load_config
from pipelines.core.faults import FAULT_ENV
from pipelines.sql import existing_tables, run_sql
from tests.conftest import ROOT, TEST_CONF, job_args

pytestmark = pytest.mark.e2e

MONTH = "2024-05"
SCORE_TABLES = ("warning_list", "customer_risk", "score_monitoring")
RUN_COLUMNS = {"scored_at"}  # when a row was written, not what it says


def _copy(lake_cfg, tmp_path: Path):
    root = tmp_path / "lake"
    shutil.copytree(lake_cfg.lake_root, root)
    return load_config([TEST_CONF], [f"lake.root={root}", f"landing.root={lake_cfg.landing_root}"])


def _killed(job: str, cfg, fault: str) -> None:
    """Run ``jobs/<job>.py --month MONTH`` in a process that is SIGKILLed at ``fault``."""
    env = {**os.environ, FAULT_ENV: fault, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "jobs" / f"{job}.py"), "--month", MONTH, *job_args(cfg)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == -signal.SIGKILL, (
        f"{fault} was never reached: {run.returncode}\n{run.stderr[-2000:]}"
    )


def _month_rows(cfg, table: str) -> pd.DataFrame:
    frame = DeltaTable(cfg.table_path(table)).to_pandas(filters=[("score_month", "=", MONTH)])
    frame = frame.drop(columns=sorted(RUN_COLUMNS & set(frame.columns)))
    return frame.sort_values(list(frame.columns)[:3]).reset_index(drop=True)


def _readable_everywhere(cfg) -> dict[str, int]:
    """Every table of the lake read whole by delta-rs and counted by DuckDB: the same row counts."""
    counts = {}
    for name, path in existing_tables(cfg).items():
        rows = DeltaTable(path).to_pyarrow_table().num_rows
        assert run_sql(cfg, f'SELECT count(*) AS n FROM "{name}"')["n"].tolist() == [rows], name
        counts[name] = rows
    return counts


@pytest.mark.parametrize(
    "fault",
    [
        "staged@warning_list",  # the first table's files staged, nothing moved
        "moving@warning_list",  # a file moved into the table, no commit
        "committed@warning_list",  # the first of three tables committed, the others not
        "committed@customer_risk",  # two of three
        "staged@pipeline_runs",  # the tables written, the run record not
    ],
)
def test_a_score_job_killed_anywhere_leaves_old_or_new_and_a_rerun_equals_a_clean_run(
    scored_lake, trained_lake, tmp_path, fault
):
    from jobs.score import main as score_job

    cfg = _copy(trained_lake.cfg, tmp_path)
    before = {
        t: DeltaTable(cfg.table_path(t)).version() if Path(cfg.table_path(t)).exists() else None
        for t in SCORE_TABLES
    }
    _killed("score", cfg, fault)

    _readable_everywhere(cfg)
    for table in SCORE_TABLES:
        reference = _month_rows(scored_lake.cfg, table)
        if before[table] is None and not Path(cfg.table_path(table), "_delta_log").exists():
            continue  # never created: the old state of a new table
        now = _month_rows(cfg, table)
        assert now.empty or now.equals(reference), f"{table} holds a mix after a kill at {fault}"

    assert score_job(["--month", MONTH, *job_args(cfg)]) == 0
    _readable_everywhere(cfg)
    for table in SCORE_TABLES:
        pd.testing.assert_frame_equal(_month_rows(cfg, table), _month_rows(scored_lake.cfg, table))
    runs = DeltaTable(cfg.table_path("pipeline_runs")).to_pandas()
    scored = runs[(runs["stage"] == "score") & (runs["month"] == MONTH)]
    assert scored["status"].tolist()[-1:] == ["success"]


def test_a_training_killed_after_registration_leaves_the_champion_and_a_rerun_promotes(
    trained_lake, tmp_path
):
    from mlflow.tracking import MlflowClient

    from jobs.train import main as train_job
    from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow, load_family

    cfg = _copy(trained_lake.cfg, tmp_path)
    configure_mlflow(cfg)
    name = cfg.train.registered_model
    champion = alias_version(name, CHAMPION)
    runs_before = DeltaTable(cfg.table_path("pipeline_runs")).to_pandas()
    _killed("train", cfg, "registered")

    configure_mlflow(cfg)
    assert alias_version(name, CHAMPION) == champion  # no alias moved by the killed run
    versions = sorted(int(v.version) for v in MlflowClient().search_model_versions(f"name='{name}'"))
    assert versions[-1] == int(champion) + 1  # its version registered, an orphan without an alias
    runs = DeltaTable(cfg.table_path("pipeline_runs")).to_pandas()
    assert len(runs) == len(runs_before)  # and no run recorded
    _readable_everywhere(cfg)

    assert train_job(["--month", MONTH, *job_args(cfg)]) == 0
    family, version = load_family(name, CHAMPION)
    frame = trained_lake.result.test_frame
    old = trained_lake.result.served.predict_proba(frame)  # the champion: the refit
    # the rerun trains on the same rows with the same seed: the model is the clean run's
    assert family.predict_proba(frame) == pytest.approx(old)
    assert int(version) >= int(champion)
