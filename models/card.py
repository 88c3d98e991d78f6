"""The model card of a registered family version (pure): what it learned from, how well, and for whom.

:func:`fairness_view` measures the family on labelled rows by group (region, segment, plan type): rows,
churn rate, mean probability, ROC AUC and the contact rate (the share whose probability reaches the
contact threshold). :func:`render_card` writes the card as Markdown from the family, its window, the test
metrics of the family and its calibrated baselines and that view; the training stage logs it to MLflow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.family import ModelFamily
from models.metrics import classification_metrics

FAIRNESS_GROUPS = ("region", "segment", "plan_type")
CARD_METRICS = (
    ("roc_auc", "ROC AUC", "{:.4f}"),
    ("top_decile_lift", "top-decile lift", "{:.2f}"),
    ("ece", "calibration error", "{:.4f}"),
    ("calibration_slope", "calibration slope", "{:.2f}"),
    ("empc", "EMPC", "{:.3f}"),
)
MODEL_NAMES = {
    "family": "**family**",
    "pooled": "pooled LightGBM (calibrated)",
    "logistic": "logistic (calibrated)",
}


def fairness_view(
    frame: pd.DataFrame,
    y: np.ndarray,
    probability: np.ndarray,
    *,
    contact_threshold: float,
    groups: Sequence[str] = FAIRNESS_GROUPS,
) -> pd.DataFrame:
    """Per group column of ``frame`` present and each of its values: rows, churn rate, mean probability,
    ROC AUC (NaN with one class) and contact rate (probability at or above ``contact_threshold``)."""
    y, p = np.asarray(y, dtype=float), np.asarray(probability, dtype=float)
    out = []
    for group in groups:
        if group not in frame.columns:
            continue
        values = frame[group].astype(object).where(frame[group].notna(), "(unknown)").astype(str).to_numpy()
        for value in sorted(set(values)):
            rows = values == value
            m = classification_metrics(y[rows], p[rows])
            out.append(
                {
                    "group": group,
                    "value": value,
                    "rows": int(rows.sum()),
                    "churn_rate": float(y[rows].mean()),
                    "mean_probability": float(p[rows].mean()),
                    "roc_auc": m["roc_auc"],
                    "contact_rate": float((p[rows] >= contact_threshold).mean()),
                }
            )
    return pd.DataFrame(
        out, columns=["group", "value", "rows", "churn_rate", "mean_probability", "roc_auc", "contact_rate"]
    )


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "n/a"
    return pattern.format(value)


def _metrics_table(
    test_metrics: Mapping[str, Mapping[str, Mapping[str, float]]], cohorts: Sequence[str]
) -> list[str]:
    head = (
        "| cohort | model | rows | churn rate | " + " | ".join(label for _, label, _ in CARD_METRICS) + " |"
    )
    lines = [head, "|" + "---|" * (4 + len(CARD_METRICS))]
    for cohort in ["all", *cohorts]:
        for model, by_cohort in test_metrics.items():
            m = by_cohort.get(cohort)
            if m is None:
                continue
            cells = [_fmt(m.get(k), pattern) for k, _, pattern in CARD_METRICS]
            lines.append(
                f"| {cohort} | {MODEL_NAMES.get(model, model)} | {int(m.get('rows', 0)):,} | "
                f"{_fmt(m.get('churn_rate'), '{:.3f}')} | " + " | ".join(cells) + " |"
            )
    return lines


def render_card(
    family: ModelFamily,
    *,
    name: str,
    version: str,
    window: Mapping[str, Any],
    test_metrics: Mapping[str, Mapping[str, Mapping[str, float]]],
    fairness: pd.DataFrame,
    contact_threshold: float,
    evidence: str | None = None,
    limits: Sequence[str] = (),
) -> str:
    """The card of ``name`` version ``version`` as Markdown.

    ``window``: ``run_month``, ``fit_months``, ``valid_month``, ``test_month`` (and ``refit_months`` for a
    refitted family); ``test_metrics``: model -> cohort -> metric on the test month; ``evidence``: for a
    refit, the version whose test metrics these are.
    """
    report = family.report
    cohorts = list(family.spec.cohorts.names)
    lines = [f"# Model card: {name} version {version}", ""]
    lines += ["## Data window", ""]
    lines.append(
        f"- run month {window['run_month']}: fitted on {', '.join(window['fit_months'])}, validated "
        f"on {window['valid_month']}, tested on {window['test_month']}"
    )
    if window.get("refit_months"):
        lines.append(
            f"- refitted on {', '.join(window['refit_months'])} with the gated iterations; the "
            f"figures below are those of {evidence or 'the gated version'} on the test month"
        )
    slices = report.get("slices")
    if slices:
        lines.append("- validation slices (rows): " + ", ".join(f"{k} {v:,}" for k, v in slices.items()))
    lines.append(f"- rows: {', '.join(f'{k} {v:,}' for k, v in report['rows'].items())}")
    lines += [
        "",
        "## Features",
        "",
        f"{len(family.features)} features: " + ", ".join(f"`{f}`" for f in family.features),
    ]
    lines += [
        "",
        "## Cohorts",
        "",
        "| cohort | served by | why | calibration | iterations |",
        "|---|---|---|---|---|",
    ]
    iterations = report.get("iterations", {})
    for cohort in cohorts:
        info = report["cohorts"][cohort]
        model = cohort if info["served_by"] == "cohort" else "pooled"
        lines.append(
            f"| {cohort} | {info['served_by']} | {info['reason']} | {info.get('calibration', '')} | "
            f"{iterations.get(model, '')} |"
        )
    lines += ["", "## Test-month metrics against the calibrated baselines", ""]
    lines += _metrics_table(test_metrics, cohorts)
    lines += [
        "",
        "## Calibration",
        "",
        f"Per cohort ({family.spec.params.calibration}) on the validation month's calibration slice; the "
        "baselines are calibrated on the same rows. Calibration error and slope per cohort are in the table "
        "above (a slope of 1 is calibrated).",
    ]
    lines += [
        "",
        "## Fairness view",
        "",
        f"Test month by group; the contact rate is the share with a probability of at least "
        f"{contact_threshold} (the medium band, where offers start).",
        "",
        "| group | value | rows | churn rate | mean probability | ROC AUC | contact rate |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in fairness.itertuples(index=False):
        lines.append(
            f"| {r.group} | {r.value} | {r.rows:,} | {r.churn_rate:.3f} | {r.mean_probability:.3f} | "
            f"{_fmt(r.roc_auc, '{:.4f}')} | {r.contact_rate:.3f} |"
        )
    lines += ["", "## Known limits", ""]
    lines += [f"- {limit}" for limit in limits] or ["- none recorded"]
    return "\n".join(lines) + "\n"
