"""Stage: every stage of one month, in order (ingest, then features and labels)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession

from pipelines.build_features import build_features_month
from pipelines.core.config import Config
from pipelines.ingest import ingest_month

log = logging.getLogger(__name__)


def run_monthly(spark: SparkSession, cfg: Config, months: Sequence[str], **ingest_options: bool) -> None:
    """Run all existing stages for each month, oldest first."""
    for i, month in enumerate(months, 1):
        log.info("monthly %s (%d/%d): ingest", month, i, len(months))
        ingest_month(spark, cfg, month, **ingest_options)
        log.info("monthly %s (%d/%d): build_features", month, i, len(months))
        build_features_month(spark, cfg, month)
