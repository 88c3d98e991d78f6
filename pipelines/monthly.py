"""Stage: every stage of one month, in order (ingest, features and labels, training when due, scoring,
evaluation of the matured months, offer matching with the effects measured so far)."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.build_features import build_features_month
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake
from pipelines.evaluate import evaluate_month
from pipelines.ingest import ingest_month
from pipelines.match_offers import match_offers_month
from pipelines.score import score_month
from pipelines.train import labelled_months, train_month, training_window

log = logging.getLogger(__name__)


def run_monthly(spark: SparkSession, cfg: Config, months: Sequence[str], **ingest_options: bool) -> None:
    """Run all existing stages for each month, oldest first."""
    for i, month in enumerate(months, 1):
        log.info("monthly %s (%d/%d): ingest", month, i, len(months))
        ingest_month(spark, cfg, month, **ingest_options)
        log.info("monthly %s (%d/%d): build_features", month, i, len(months))
        build_features_month(spark, cfg, month)
        reason = train_due(Lake(spark, cfg), month)
        if reason:
            log.info("monthly %s (%d/%d): train (%s)", month, i, len(months), reason)
            train_month(spark, cfg, month)
        if has_champion(cfg):
            log.info("monthly %s (%d/%d): score", month, i, len(months))
            score_month(spark, cfg, month)
            log.info("monthly %s (%d/%d): evaluate", month, i, len(months))
            evaluate_month(spark, cfg, month)
            log.info("monthly %s (%d/%d): match_offers", month, i, len(months))
            match_offers_month(spark, cfg, month)
        else:
            log.info("monthly %s (%d/%d): score skipped (no champion model yet)", month, i, len(months))


def has_champion(cfg: Config) -> bool:
    from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow

    configure_mlflow(cfg)
    return alias_version(cfg.train.registered_model, CHAMPION) is not None


def train_due(lake: Lake, month: str) -> str | None:
    """Why the monthly run trains as of ``month`` (None: not due, or not possible yet)."""
    cfg = lake.cfg
    if cfg.train.every_months == 0:
        return None
    try:
        training_window(month, labelled_months(lake, month), cfg)
    except InputNotReadyError as exc:
        log.info("train not possible yet: %s", exc)
        return None
    from pipelines.core.tracking import CHAMPION, alias_version, configure_mlflow

    configure_mlflow(cfg)
    if alias_version(cfg.train.registered_model, CHAMPION) is None:
        return "no champion yet"
    runs = lake.read("pipeline_runs").where(
        (F.col("stage") == "train") & (F.col("status") == "success") & F.col("scope").isNull()
    )
    last = runs.agg(F.max("month")).first()[0]
    if last is None:
        return "never trained in this lake"
    if last >= month:
        return None
    from features.calendar import months_between

    if len(months_between(last, month)) - 1 >= cfg.train.every_months:
        return f"last trained as of {last}"
    return None
