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

from pipelines.core.config import Config
from pipelines.core.lake import Lake
from pipelines.monthly import run_monthly
from pipelines.sample_data.writer import GenerateOptions, GenerateReport, SampleOperator

log = logging.getLogger(__name__)

DEMO_MARKER = ".churnlake-demo"
_MARKER_TEXT = "created by the closed-loop demo: closed_loop.py --fresh (make demo) empties this folder\n"


class NotADemoFolderError(RuntimeError):
    """``--fresh`` was pointed at a folder the demo did not create (no :data:`DEMO_MARKER`): nothing is
    deleted. Exit status 2, as for a bad config: the roots are the config's."""

    exit_status = 2

    def __init__(self, folder: Path, key: str) -> None:
        self.folder, self.key = folder, key
        super().__init__(
            f"refusing to empty {folder}: the demo did not create it (no {DEMO_MARKER}); "
            f"point {key} elsewhere, or empty it yourself"
        )


def _demo_content(folder: Path, keep: set[str]) -> list[Path]:
    """What ``--fresh`` would delete in ``folder``: everything but ``keep`` and the marker."""
    if not folder.exists():
        return []
    return [p for p in folder.iterdir() if p.name not in keep | {DEMO_MARKER}]


def reset_demo_roots(cfg: Config) -> None:
    """Empty the lake and landing roots for a fresh demo (the lake's ``_logs`` stay), and mark both as the
    demo's (:data:`DEMO_MARKER`).

    Only folders the demo created are emptied: a root holding anything without the marker is refused
    (:class:`NotADemoFolderError`) before anything is deleted, whatever the other root looks like; a
    root that does not exist yet, or holds nothing (the lake: only ``_logs``), is created or adopted. The
    roots themselves are never removed.
    """
    roots = [(Path(cfg.lake_root), "lake.root", {"_logs"}), (Path(cfg.landing_root), "landing.root", set())]
    for folder, key, keep in roots:
        if _demo_content(folder, keep) and not (folder / DEMO_MARKER).is_file():
            raise NotADemoFolderError(folder, key)
    for folder, _, keep in roots:
        for path in _demo_content(folder, keep):
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / DEMO_MARKER).write_text(_MARKER_TEXT)


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


__all__ = ["DEMO_MARKER", "NotADemoFolderError", "offer_list", "reset_demo_roots", "run_closed_loop"]
