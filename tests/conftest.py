"""One session-scoped local Spark for the whole suite; lake and landing in temp folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_CONF = ROOT / "conf" / "test.yml"
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


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
