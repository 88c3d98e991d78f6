"""The generated landing ingested once for the ingest tests, and counted independently of ingest."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from pipelines.core.lake import Lake
from pipelines.ingest import SourceReport, ingest_month
from pipelines.sample_data.writer import read_faults, read_manifest
from tests.pipelines.ingest.counts import DeliveryCount, count_months

MONTHS = ["2024-01", "2024-02", "2024-03"]


@dataclass(frozen=True)
class IngestedLake:
    """The lake after ingesting MONTHS of the session's generated landing, in order."""

    lake: Lake
    reports: dict[str, dict[str, SourceReport]]  # month -> source -> report


@dataclass(frozen=True)
class LandingTruth:
    """What the generator says it wrote, and the landing files counted with Python's csv and pyarrow."""

    counts: dict[tuple[str, str], DeliveryCount]  # (source, month) -> count
    faults: list[dict]
    manifest: dict


@pytest.fixture(scope="package")
def ingested(spark, landing, tmp_path_factory) -> IngestedLake:
    from pipelines.core.config import load_config
    from tests.conftest import TEST_CONF

    lake_root = tmp_path_factory.mktemp("lake")
    cfg = load_config([TEST_CONF], [f"lake.root={lake_root}", f"landing.root={landing}"])
    reports = {m: ingest_month(spark, cfg, m) for m in MONTHS}
    return IngestedLake(Lake(spark, cfg), reports)


@pytest.fixture(scope="package")
def truth(landing) -> LandingTruth:
    faults = read_faults(landing)
    return LandingTruth(count_months(landing, MONTHS, faults), faults, read_manifest(landing))
