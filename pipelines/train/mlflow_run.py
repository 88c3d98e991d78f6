"""What a training run leaves behind: its MLflow run and its ``model_performance`` rows.

The MLflow run holds the window and config as params, the test metrics of the family and both baselines,
one child run per cohort (who serves it and why, its metrics), charts (gains, calibration, score
distribution, importance), the family's report, the family itself as a registered pyfunc and its model
card (``model_card/v<version>.md``, named by the version's tag ``model_card``).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.family import ModelFamily
from pipelines.core.lake import Lake
from pipelines.core.maturity import TrainingWindow

Metrics = dict[str, dict[str, dict[str, float]]]  # model -> cohort (and "all") -> metric -> value
HEADLINE_METRICS = (
    "rows",
    "churn_rate",
    "roc_auc",
    "pr_auc",
    "top_decile_lift",
    "brier",
    "ece",
    "relative_ece",
    "calibration_slope",
    "empc",
    "empc_fraction",
)


def metrics_table(metrics: Metrics) -> pd.DataFrame:
    """Model x cohort rows of the headline metrics (for logs, MLflow and the docs)."""
    rows = [
        {"model": model, "cohort": cohort, **{k: m.get(k) for k in HEADLINE_METRICS}}
        for model, by_cohort in metrics.items()
        for cohort, m in by_cohort.items()
    ]
    return pd.DataFrame(rows)


def performance_rows(
    metrics: Metrics,
    window: TrainingWindow,
    source: str,
    version: str | None,
    run_id: str | None,
    *,
    evaluated: str | None = None,
) -> list[tuple[Any, ...]]:
    """``model_performance`` rows (:data:`~pipelines.core.tables.PERFORMANCE_SCHEMA`) of metrics measured on
    ``evaluated`` (by default the window's test month)."""
    return [
        (
            window.run_month,
            source,
            evaluated or window.test_month,
            model,
            cohort,
            metric,
            None if _nan(value) else float(value),
            version,
            run_id,
        )
        for model, by_cohort in metrics.items()
        for cohort, by_metric in by_cohort.items()
        for metric, value in by_metric.items()
    ]


def log_training_run(
    lake: Lake,
    *,
    window: TrainingWindow,
    family: ModelFamily,
    rows: dict[str, int],
    test_metrics: Metrics,
    test_frame: pd.DataFrame,
    test_scores: dict[str, np.ndarray],
    fit_seconds: float,
) -> tuple[str, str]:
    """Log a training as of ``window.run_month`` to MLflow and register its family: (run id, version)."""
    import mlflow

    from models import plots
    from pipelines.core.tracking import log_family

    cfg, spec = lake.cfg, family.spec
    with mlflow.start_run(run_name=f"train {window.run_month}") as parent:
        mlflow.set_tags({"stage": "train", "run_month": window.run_month, "config_hash": cfg.config_hash()})
        mlflow.log_params(
            {
                "run_month": window.run_month,
                "fit_months": ",".join(window.fit_months),
                "valid_month": window.valid_month,
                "test_month": window.test_month,
                "features_version": lake.version("features_monthly"),
                "labels_version": lake.version("labels_monthly"),
                "config_hash": cfg.config_hash(),
                "calibration": cfg.model.calibration,
                "serve": cfg.model.serve,
                "features": len(family.features),
                **{f"rows_{k}": v for k, v in rows.items()},
                **{f"lgb_{k}": v for k, v in cfg.model.lightgbm.items()},
            }
        )
        for model, by_cohort in test_metrics.items():
            mlflow.log_metrics({f"test_{model}_{k}": v for k, v in by_cohort["all"].items() if not _nan(v)})
        mlflow.log_metric("fit_seconds", fit_seconds)
        for cohort in spec.cohorts.names:
            info = family.report["cohorts"][cohort]
            with mlflow.start_run(run_name=f"cohort {cohort}", nested=True):
                mlflow.set_tags({"cohort": cohort, "served_by": info["served_by"], "reason": info["reason"]})
                mlflow.log_params({k: v for k, v in info.items() if not isinstance(v, dict)})
                for model, by_cohort in test_metrics.items():
                    if cohort in by_cohort:
                        mlflow.log_metrics(
                            {f"test_{model}_{k}": v for k, v in by_cohort[cohort].items() if not _nan(v)}
                        )
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            y = test_frame[spec.label].to_numpy(dtype=float)
            importance = {
                name: dict(zip(b.feature_name(), b.feature_importance("gain").tolist(), strict=True))
                for name, b in family.boosters.items()
            }
            figures = {
                "gains_lift.png": plots.gains_chart(y, test_scores),
                "calibration.png": plots.calibration_chart(y, {"family": test_scores["family"]}),
                "score_distribution.png": plots.score_distribution(y, test_scores["family"]),
                "feature_importance.png": plots.importance_chart(importance),
            }
            for name, fig in figures.items():
                fig.savefig(out / name, dpi=90)
            metrics_table(test_metrics).to_csv(out / "test_metrics.csv", index=False)
            if family.segments is not None:
                family.segments.centroids.to_csv(out / "usage_segments.csv", index=False)
            (out / "family_report.json").write_text(json.dumps(family.report, indent=1, default=str))
            mlflow.log_artifacts(str(out), artifact_path="report")
        version = log_family(family, test_frame, cfg.train.registered_model)
        log_model_card(
            lake, family, version, window=window, test_metrics=test_metrics, test_frame=test_frame,
            probability=test_scores["family"],
        )  # fmt: skip
    return parent.info.run_id, version


KNOWN_LIMITS = (
    "Lines contacted by a campaign inside their label window are left out of the training rows: the model "
    "is the risk if left alone, and lines a campaign keeps reaching are under-represented.",
    "Validated and tested on the operator's own history only: a driver of churn the features do not carry "
    "is invisible to it, and its figures hold for months like the test month.",
    "A cohort without churners in its validation slices is served by the pooled model, unjudged on its own.",
)


def log_model_card(
    lake: Lake,
    family: ModelFamily,
    version: str,
    *,
    window: TrainingWindow,
    test_metrics: Metrics,
    test_frame: pd.DataFrame,
    probability: np.ndarray,
    evidence: str | None = None,
) -> str:
    """Render the card of ``version`` (the test month's metrics and fairness view), log it in the active run
    under ``model_card/`` and tag the version with its path: the path."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from models.card import fairness_view, render_card

    cfg = lake.cfg
    name = cfg.train.registered_model
    threshold = cfg.score.band_medium
    y = test_frame[family.spec.label].to_numpy(dtype=float)
    refit = family.report.get("refit")
    card = render_card(
        family,
        name=name,
        version=version,
        window={
            "run_month": window.run_month,
            "fit_months": window.fit_months,
            "valid_month": window.valid_month,
            "test_month": window.test_month,
            "refit_months": refit["months"] if refit else None,
        },
        test_metrics=test_metrics,
        fairness=fairness_view(test_frame, y, probability, contact_threshold=threshold),
        contact_threshold=threshold,
        evidence=evidence,
        limits=KNOWN_LIMITS,
    )
    path = f"model_card/v{version}.md"
    mlflow.log_text(card, path)
    MlflowClient().set_model_version_tag(name, version, "model_card", path)
    return path


def _nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))
