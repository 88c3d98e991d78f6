"""Stage: learn each offer's effect per line from the randomised experiment, and decide whether matching
targets by it (uplift) or keeps ``churn_probability x effect`` (the rule).

``uplift_month(spark, cfg, M)``:

1. takes the experiment lines (treated, and their offer's control group) of the score months whose
   outcome matured by M (:func:`pipelines.core.maturity.matured_score_months`), with their campaign
   outcome (churn from the contact month), the warning list's columns and the feature table's at the
   score month (:func:`pipelines.core.experiment.experiment_lines`);
2. holds out the latest ``uplift.holdout_months`` of them and fits a candidate
   (:func:`models.uplift.fit_uplift`) on up to ``uplift.fit_months`` before; a run month whose fitted or
   held-out lines have fewer than ``uplift.min_lines_per_arm`` in an arm (in all, or in every offer the
   candidate covers) skips, with the reason logged and recorded (the registry is left as it was: no new
   evidence);
3. compares the candidate's ranking with the rule's on the held-out lines of the offers it covers
   (:func:`models.uplift.compare_rankings`: the Qini, and the realised net value of targeting each offer's
   top ``uplift.target_share``), and promotes it only when it beats the rule on both beyond the noise
   (:func:`models.uplift.uplift_decision`);
4. logs the comparison and the decision to MLflow (``mlflow.experiment``, run ``uplift <M>``); promoted,
   the model is refitted on the fitted and held-out months together, registered
   (``uplift.registered_model``) and given the alias ``champion``, which ``match_offers`` reads; refused,
   the alias is taken off, so matching falls back to the rule.

The decision and its reasons go to ``pipeline_runs.flags``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession

from models.offers import value_of_save
from models.uplift import (
    OFFER,
    TREATED,
    RankingComparison,
    UpliftModel,
    compare_rankings,
    fit_uplift,
    uplift_decision,
)
from pipelines.core.config import Config
from pipelines.core.experiment import experiment_lines
from pipelines.core.lake import Lake
from pipelines.core.manifest import recorded_run
from pipelines.core.maturity import matured_score_months

log = logging.getLogger(__name__)


@dataclass
class UpliftReport:
    month: str
    status: str = "skipped"  # promoted, refused or skipped
    decision: list[str] = field(default_factory=list)
    fit_months: list[str] = field(default_factory=list)
    holdout_months: list[str] = field(default_factory=list)
    lines: dict[str, int] = field(default_factory=dict)
    covered: list[str] = field(default_factory=list)  # offers with a model of their own
    comparison: RankingComparison | None = None
    version: str | None = None
    run_id: str | None = None


def split_months(months: list[str], cfg: Config) -> tuple[list[str], list[str]]:
    """(fitted, held-out) among the matured score months: the latest ``holdout_months`` held out, up to
    ``fit_months`` before them fitted."""
    p = cfg.uplift
    if len(months) <= p.holdout_months:
        return [], months
    return months[: -p.holdout_months][-p.fit_months :], months[-p.holdout_months :]


def _arms(frame: pd.DataFrame) -> tuple[int, int]:
    treated = frame[TREATED].to_numpy(dtype=bool)
    return int(treated.sum()), int((~treated).sum())


def held_out_scores(model: UpliftModel, held: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each held-out line scored by both rankings for its intended offer: the model's predicted churn
    reduction, and the rule's ``churn_probability`` (``x effect`` orders an offer's lines the same)."""
    effects = model.predict_effect(held)
    column = held[OFFER].map({o: j for j, o in enumerate(model.offer_ids)}).to_numpy()
    return {
        "uplift": effects[np.arange(len(held)), column],
        "rule": held["churn_probability"].to_numpy(dtype=float),
    }


def uplift_month(spark: SparkSession, cfg: Config, month: str) -> UpliftReport:
    """Fit, compare and promote (or refuse) the offers' uplift model as of ``month``."""
    lake = Lake(spark, cfg)
    p = cfg.uplift
    report = UpliftReport(month)
    with recorded_run(lake, "uplift", month) as run:
        months = matured_score_months(lake, month) if lake.exists("offer_assignments") else []
        report.fit_months, report.holdout_months = split_months(months, cfg)
        run.flags = {"fit_months": report.fit_months, "holdout_months": report.holdout_months}
        if not report.fit_months:
            return _skip(
                report,
                run,
                f"needs more than {p.holdout_months} matured score month(s) with offers to fit and hold out, "
                f"has {len(months)} ({', '.join(months) or 'none'})",
            )
        run.input_versions = lake.versions(
            ["offer_assignments", "labels_monthly", "warning_list", "features_monthly"]
        )
        frame = experiment_lines(lake, [*report.fit_months, *report.holdout_months], p.features)
        fitted = frame[frame["score_month"].isin(report.fit_months)]
        held = frame[frame["score_month"].isin(report.holdout_months)]
        for name, part in (("fitted", fitted), ("held_out", held)):
            report.lines[f"{name}_treated"], report.lines[f"{name}_control"] = _arms(part)
        run.row_counts = dict(report.lines)
        for name, part, used in (
            ("fitted", fitted, report.fit_months),
            ("held-out", held, report.holdout_months),
        ):
            treated, control = _arms(part)
            if min(treated, control) < p.min_lines_per_arm:
                return _skip(
                    report,
                    run,
                    f"the {name} months ({', '.join(used)}) have {treated} treated and {control} control "
                    f"experiment lines, fewer than uplift.min_lines_per_arm ({p.min_lines_per_arm}) in an "
                    "arm",
                )
        offer_ids = [o.id for o in cfg.offers.offers]
        from pipelines.core.tracking import champion_of

        before = champion_of(cfg, cfg.uplift.registered_model)  # moved later only if still there
        candidate = fit_uplift(fitted, offer_ids, p)
        report.covered = candidate.covered()
        if not report.covered:
            return _skip(
                report,
                run,
                f"no offer has {p.min_lines_per_arm} treated and control lines in the fitted months",
            )
        held = held[held[OFFER].isin(report.covered)]
        comparison = compare_rankings(
            held,
            held_out_scores(candidate, held),
            value_of_save(held["arpu_3m"], cfg.offers),
            {o.id: o.cost for o in cfg.offers.offers},
            target_share=p.target_share,
            min_lines_per_arm=p.min_lines_per_arm,
            confidence=p.confidence,
            resamples=p.resamples,
            seed=p.seed,
        )
        if not comparison.compared:
            return _skip(
                report,
                run,
                f"no offer the model covers has {p.min_lines_per_arm} treated and control lines in the "
                f"held-out months ({', '.join(report.holdout_months)})",
            )
        promoted, report.decision = uplift_decision(comparison)
        report.comparison, report.status = comparison, "promoted" if promoted else "refused"
        final = fit_uplift(frame, offer_ids, p) if promoted else None
        _track(lake, report, candidate, final, before)
        run.model_versions = {"name": p.registered_model, "version": report.version, "promoted": promoted}
        run.flags = _flags(report)
        log.info(
            "uplift %s: %s (%s)%s",
            month,
            report.status,
            "; ".join(report.decision),
            f", {p.registered_model} version {report.version} is champion" if report.version else "",
        )
    return report


def _skip(report: UpliftReport, run: Any, reason: str) -> UpliftReport:
    """Skip the month: the reason logged and recorded; the registry (and so matching) is left as it was."""
    report.status, report.decision = "skipped", [reason]
    run.flags = _flags(report)
    log.info("uplift %s: skipped, %s", report.month, reason)
    return report


def _flags(report: UpliftReport) -> dict[str, Any]:
    flags: dict[str, Any] = {
        "status": report.status,
        "decision": report.decision,
        "fit_months": report.fit_months,
        "holdout_months": report.holdout_months,
        "covered": report.covered,
        "version": report.version,
    }
    c = report.comparison
    if c is not None:
        flags |= {
            "qini": c.qini,
            "net_value": c.net_value,
            "qini_gain_low": c.qini_gain_low,
            "value_gain_low": c.value_gain_low,
            "compared": c.compared,
        }
    return flags


def _track(
    lake: Lake,
    report: UpliftReport,
    candidate: UpliftModel,
    final: UpliftModel | None,
    before: str | None,
) -> None:
    """The MLflow run of the decision; promoted, the refitted model registered as champion, else the
    champion alias taken off (matching keeps the rule). Either only while the alias still points at
    ``before``, the version it held when this run started (:func:`~pipelines.core.tracking.move_alias`)."""
    import mlflow

    from pipelines.core.tracking import CHAMPION, configure_mlflow, log_uplift, move_alias

    cfg, p = lake.cfg, lake.cfg.uplift
    comparison = report.comparison
    assert comparison is not None
    configure_mlflow(cfg)
    with mlflow.start_run(run_name=f"uplift {report.month}") as run:
        report.run_id = run.info.run_id
        mlflow.set_tags(
            {
                "stage": "uplift",
                "run_month": report.month,
                "config_hash": cfg.config_hash(),
                "promoted": str(report.status == "promoted"),
            }
        )
        mlflow.log_params(
            {
                "run_month": report.month,
                "fit_months": ",".join(report.fit_months),
                "holdout_months": ",".join(report.holdout_months),
                "learner": p.learner,
                "covered": ",".join(report.covered),
                "features": len(candidate.features),
                "target_share": p.target_share,
                "confidence": p.confidence,
                **{f"lines_{k}": v for k, v in report.lines.items()},
                **{f"lgb_{k}": v for k, v in p.lightgbm.items()},
            }
        )
        metrics = {
            **{f"qini_{k}": v for k, v in comparison.qini.items()},
            **{f"net_value_{k}": v for k, v in comparison.net_value.items()},
            "qini_gain_low": comparison.qini_gain_low,
            "value_gain_low": comparison.value_gain_low,
        }
        for row in comparison.table.itertuples(index=False):
            for name in ("qini_uplift", "qini_rule", "value_uplift", "value_rule"):
                metrics[f"{row.offer_id}_{name}"] = getattr(row, name)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            comparison.table.to_csv(out / "offer_comparison.csv", index=False)
            (out / "candidate_report.json").write_text(json.dumps(candidate.report, indent=1, default=str))
            (out / "decision.txt").write_text("\n".join(report.decision) + "\n")
            mlflow.log_artifacts(str(out), artifact_path="report")
        if final is not None:
            report.version = log_uplift(final, p.registered_model, report.month)
            mlflow.set_tag("model_version", report.version)
            move_alias(p.registered_model, CHAMPION, report.version, expected=before)
        elif before is not None:
            move_alias(p.registered_model, CHAMPION, None, expected=before)
            report.decision.append(f"the champion alias of {p.registered_model} was taken off")


__all__ = ["UpliftReport", "held_out_scores", "split_months", "uplift_month"]
