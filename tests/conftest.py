"""One session-scoped local Spark for the whole suite; lake and landing in temp folders."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pipelines.core.config import Config

ROOT = Path(__file__).resolve().parent.parent
TEST_CONF = ROOT / "conf" / "test.yml"
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


def cfg_at(root: Path | str, landing: Path | str, *extra: str) -> Config:
    """The test configuration with its lake at ``root`` and landing zone at ``landing``, plus ``key=value``
    overrides (``extra``)."""
    from pipelines.core.config import load_config

    return load_config([TEST_CONF], [f"lake.root={root}", f"landing.root={landing}", *extra])


def job_args(cfg) -> list[str]:
    """Command-line arguments that point a job at ``cfg``'s lake and landing zone (test overlay)."""
    return [
        "--conf",
        str(TEST_CONF),
        "--set",
        f"lake.root={cfg.lake_root}",
        "--set",
        f"landing.root={cfg.landing_root}",
    ]


@pytest.fixture(scope="session")
def spark():
    from pipelines.core.config import load_config
    from pipelines.core.spark import get_spark

    cfg = load_config([TEST_CONF])
    session = get_spark(cfg)
    yield session
    session.stop()


@pytest.fixture
def make_cfg(tmp_path):
    """Build a config rooted in this test's temp folder, with extra ``key=value`` overrides."""
    from pipelines.core.config import load_config

    def _make(*overrides: str):
        return load_config(
            [TEST_CONF],
            [f"lake.root={tmp_path / 'lake'}", f"landing.root={tmp_path / 'landing'}", *overrides],
        )

    return _make


@pytest.fixture
def lake(spark, make_cfg):
    from pipelines.core.lake import Lake

    return Lake(spark, make_cfg())


def run_notebook(name: str) -> tuple[list[str], int]:
    """Execute ``notebooks/<name>`` from the project root (the kernel inherits this process's environment:
    set ``CHURN_LAKE_ROOT`` and friends first); each cell's text output, and how many figures it drew."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    texts = [
        "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in c.get("outputs", []))
        for c in nb.cells
    ]
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    return texts, figures


GEN_MONTHS = ("2024-01", "2024-02", "2024-03", "2024-04", "2024-05", "2024-06", "2024-07")


@pytest.fixture(scope="session")
def landing(tmp_path_factory):
    """Seven months of generated landing data (3,000 subscribers) with bad rows and file faults."""
    from pipelines.sample_data.writer import GenerateOptions, generate

    root = tmp_path_factory.mktemp("landing")
    generate(
        root,
        GenerateOptions(months=GEN_MONTHS, subscribers=3000, seed=11, bad_rows=0.003, file_faults=True),
    )
    return root


def _rows(lake, table: str, month: str) -> list[tuple]:
    from pyspark.sql import functions as F

    df = lake.read(table).where(F.col("month") == month)
    return sorted(tuple(r) for r in df.select(*sorted(df.columns)).collect())


@dataclass(frozen=True)
class FeatureLake:
    """The session's feature lake and what building it reported."""

    lake: Any  # pipelines.core.lake.Lake
    cfg: Any  # pipelines.core.config.Config
    first: Any  # the first build report of 2024-03
    again: Any  # the rebuild report of 2024-03, after later months arrived
    later: Any  # the build report of 2024-04
    before: dict[str, list[tuple]]  # features and labels rows of 2024-03 before the later months
    after_features: list[tuple]  # features rows of 2024-03 after the rebuild


@dataclass(frozen=True)
class TrainedLake:
    lake: Any
    cfg: Any
    result: Any  # pipelines.train.TrainResult of the training as of 2024-05


@dataclass(frozen=True)
class ScoredLake:
    lake: Any
    cfg: Any
    result: Any  # the TrainResult whose model scored
    first: Any  # pandas: the warning list of the first score run


@dataclass(frozen=True)
class LoopLake:
    lake: Any
    cfg: Any
    args: list[str]  # job arguments pointing at it


@pytest.fixture(scope="session")
def feature_lake(spark, landing, tmp_path_factory) -> FeatureLake:
    """Features and labels of 2024-01..04 over the generated landing (read-only: copy it to change it).

    Ingest 01..03 and build 01..03; then ingest 04..06 (the snapshots that close the label windows of
    01..04), build 04 and rebuild 03.
    """
    from pipelines.build_features import build_features_month
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake
    from pipelines.ingest import ingest_month

    root = tmp_path_factory.mktemp("feature_lake")
    cfg = load_config([TEST_CONF], [f"lake.root={root}", f"landing.root={landing}"])
    lake = Lake(spark, cfg)
    for month in ("2024-01", "2024-02", "2024-03"):
        ingest_month(spark, cfg, month)
    for month in ("2024-01", "2024-02"):
        build_features_month(spark, cfg, month)
    first = build_features_month(spark, cfg, "2024-03")
    before = {t: _rows(lake, t, "2024-03") for t in ("features_monthly", "labels_monthly")}
    for month in ("2024-04", "2024-05", "2024-06"):
        ingest_month(spark, cfg, month)
    later = build_features_month(spark, cfg, "2024-04")
    again = build_features_month(spark, cfg, "2024-03")
    after_features = _rows(lake, "features_monthly", "2024-03")
    return FeatureLake(lake, cfg, first, again, later, before, after_features)


@pytest.fixture(scope="session")
def trained_lake(spark, feature_lake, tmp_path_factory) -> TrainedLake:
    """A copy of the feature lake with features of 2024-05 too, trained as of 2024-05 (version 1, champion).

    Read-only for its users: copy it to change it (the MLflow store is inside the lake; the experiment's
    artifact folder stays this lake's, so copies add runs next to these, never over them).
    """
    import shutil

    from pipelines.build_features import build_features_month
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake
    from pipelines.train import train_month

    base_cfg = feature_lake.cfg
    root = tmp_path_factory.mktemp("trained_lake") / "lake"
    shutil.copytree(base_cfg.lake_root, root)
    cfg = load_config([TEST_CONF], [f"lake.root={root}", f"landing.root={base_cfg.landing_root}"])
    build_features_month(spark, cfg, "2024-05")
    result = train_month(spark, cfg, "2024-05")
    return TrainedLake(Lake(spark, cfg), cfg, result)


@pytest.fixture(scope="session")
def scored_lake(spark, trained_lake, tmp_path_factory) -> ScoredLake:
    """A copy of the trained lake with 2024-05 scored twice through the job (the second run is a rerun).

    Read-only for its users.
    """
    import shutil

    from jobs.score import main as score_job
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake

    base_cfg = trained_lake.cfg
    root = tmp_path_factory.mktemp("score_lake") / "lake"
    shutil.copytree(base_cfg.lake_root, root)
    cfg = load_config([TEST_CONF], [f"lake.root={root}", f"landing.root={base_cfg.landing_root}"])
    assert score_job(["--month", "2024-05", *job_args(cfg)]) == 0
    lake = Lake(spark, cfg)
    first = lake.read("warning_list").toPandas()
    assert score_job(["--month", "2024-05", *job_args(cfg)]) == 0
    return ScoredLake(lake, cfg, trained_lake.result, first)


LOOP_MONTHS = "2024-01..2024-08"
LOOP_OUTPUTS = (
    "subscriptions",
    "cdr",
    "billing",
    "care",
    "campaign_outcomes",
    "quarantine",
    "data_quality",
    "features_monthly",
    "labels_monthly",
    "model_performance",
    "warning_list",
    "customer_risk",
    "score_monitoring",
    "offer_assignments",
    "campaign_effect",
    "programme_effect",
    "offer_effects",
    "campaign_feedback",
)
# a campaign big enough to measure: every band is a candidate, a saved line is worth five years of revenue
# (so medium-risk lines are worth an offer), half of the picked lines are held out, and 20 lines per arm
# are enough to feed an effect back
LOOP_SETTINGS = (
    "offers.min_band=low",
    "offers.holdout_rate=0.5",
    "offers.budget=20000",
    "offers.value_horizon_months=60",
    "evaluate.min_arm_lines=20",
)


@pytest.fixture(scope="session")
def loop_lake(spark, tmp_path_factory) -> LoopLake:
    """The closed loop over eight months into an empty lake through its job (e2e tests only)."""
    from jobs.closed_loop import main as closed_loop
    from pipelines.core.config import load_config
    from pipelines.core.lake import Lake

    root = tmp_path_factory.mktemp("loop")
    settings = [f"lake.root={root / 'lake'}", f"landing.root={root / 'landing'}", *LOOP_SETTINGS]
    cfg = load_config([TEST_CONF], settings)
    args = ["--conf", str(TEST_CONF), *(x for s in settings for x in ("--set", s))]
    status = closed_loop(["--months", LOOP_MONTHS, "--subscribers", "2500", "--seed", "3", "--fresh", *args])
    assert status == 0
    return LoopLake(Lake(spark, cfg), cfg, args)
