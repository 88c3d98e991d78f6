"""Stage: the whole loop on simulated data where the truth is known (``make demo``, the loop tests).

Month after month the simulated operator delivers its extracts, the monthly pipeline ingests, builds
features, trains when due, scores, evaluates and matches offers, and then the operator's campaign system
(the simulation again) reads ``offer_assignments`` of that month and carries it out: contacts,
acceptances and their true effect on churn, with the outcomes delivered in the next month's
``campaign_outcomes``. Months before the pipeline has a model run the operator's own campaign. The true
effect of every campaign is in the landing manifest, per offer (``campaign_truth``, beside what the
evaluation measures in ``campaign_effect``) and per listed line (``campaign_truth_lines``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from pipelines.core.config import PROJECT_ROOT, Config
from pipelines.core.lake import Lake
from pipelines.monthly import run_monthly
from pipelines.sample_data.writer import GenerateOptions, GenerateReport, SampleOperator

log = logging.getLogger(__name__)

DEMO_MARKER = ".churnlake-demo"


def reset_demo_roots(cfg: Config) -> None:
    """Empty the lake and landing roots for a fresh demo (the lake's ``_logs`` stay); refuse a lake the
    demo did not create, unless it is in the project's ``data/`` folder."""
    lake, landing = Path(cfg.lake_root), Path(cfg.landing_root)
    content = [p for p in lake.iterdir() if p.name != "_logs"] if lake.exists() else []
    own = PROJECT_ROOT / "data"  # the project's own data folder is the demo's (make clean empties it)
    if content and not (lake / DEMO_MARKER).exists() and not lake.resolve().is_relative_to(own.resolve()):
        raise ValueError(
            f"refusing to empty {lake}: it is not a demo lake (no {DEMO_MARKER}); point lake.root elsewhere"
        )
    for path in content:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    if landing.exists():
        shutil.rmtree(landing)
    lake.mkdir(parents=True, exist_ok=True)
    (lake / DEMO_MARKER).write_text("created by the closed-loop demo; make demo empties this lake\n")


def offer_list(lake: Lake, month: str) -> pd.DataFrame | None:
    """What the campaign system reads of ``offer_assignments`` for ``month``: treated lines and their
    offers' control lines (the programme hold-out is no campaign's control: it is simply left alone)."""
    if not lake.exists("offer_assignments"):
        return None
    return (
        lake.read("offer_assignments")
        .where(
            (F.col("score_month") == month)
            & F.col("status").isin("assigned", "holdout")
            & F.col("intended_offer_id").isNotNull()
        )
        .select("subscriber_id", "status", "intended_offer_id", "channel")
        .toPandas()
    )


def run_closed_loop(
    spark: SparkSession,
    cfg: Config,
    months: Sequence[str],
    opts: GenerateOptions,
    *,
    before_campaign: Callable[[str, SampleOperator], None] | None = None,
) -> GenerateReport:
    """Deliver, run the monthly pipeline on, and act on each of ``months`` in order.

    ``before_campaign(month, operator)``: called after the month's pipeline run and before its offer list
    is carried out (the targeting study values policies there, against the operator's hidden truth).
    """
    lake = Lake(spark, cfg)
    operator = SampleOperator(cfg.landing_root, opts, months[0])
    churn = cfg.churn
    start = time.perf_counter()
    try:
        for i, month in enumerate(months, 1):
            t0 = time.perf_counter()
            operator.deliver(month)
            log.info(
                "closed loop %s (%d/%d, %.0fs so far): delivered in %.1fs",
                month,
                i,
                len(months),
                t0 - start,
                time.perf_counter() - t0,
            )
            run_monthly(spark, cfg, [month])
            if before_campaign is not None:
                before_campaign(month, operator)
            operator.respond(
                month,
                offer_list(lake, month),
                gap_months=churn.gap_months,
                window_months=churn.window_months,
            )
    finally:
        report = operator.close()
    return report


__all__ = ["offer_list", "reset_demo_roots", "run_closed_loop"]
