"""What a score means to a retention team (pure): risk band, value tier, strategy, reasons, churn type.

Every function works on numpy arrays or pandas frames (one entry per subscriber) and
:class:`~models.params.ScoreParams`, so the Spark stage applies them batch by batch and a notebook applies
them to a pandas frame: :func:`score_frame` scores a batch of feature rows, :func:`reason_frame` explains
one, and :func:`drift_psi` turns the counts of rows per drift bin into the PSI of each monitored column.

Reasons are the largest positive SHAP contributions (log-odds, LightGBM's own ``pred_contrib`` of the
model serving the row's cohort): the features that push this subscriber's risk up. Each feature belongs
to one reason family by the configured name patterns; the churn type is the family whose features push
the risk up the most in total.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
import pandas as pd

from features.columns import avg_col
from models.family import ModelFamily
from models.monitoring import DriftProfile
from models.params import REASON_FAMILIES, ScoreParams

# the frame score_frame returns, as a Spark schema
SCORED_SCHEMA = (
    "subscriber_id string, customer_id string, household_id string, cohort string, tenure_months int, "
    "lifecycle_stage string, hard_warning boolean, arpu_3m double, churn_probability double, "
    "raw_score double, risk_band string, value_tier string, strategy string, usage_segment string, "
    "drift_bins array<int>"
)
# the frame reason_frame returns, as a Spark schema
REASONS_SCHEMA = (
    "subscriber_id string, reasons array<struct<feature:string, contribution:double, family:string>>, "
    "churn_type string"
)


def risk_band(probability: np.ndarray, params: ScoreParams) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` by the configured probability thresholds."""
    p = np.asarray(probability, dtype=float)
    return np.where(p >= params.band_high, "high", np.where(p >= params.band_medium, "medium", "low")).astype(
        object
    )


def value_tier(arpu_3m: np.ndarray, params: ScoreParams) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` / ``unprofitable`` by ARPU net of discounts (null counts as 0)."""
    a = np.nan_to_num(np.asarray(arpu_3m, dtype=float), nan=0.0)
    return np.select(
        [a >= params.value_high, a >= params.value_medium, a >= params.value_low],
        ["high", "medium", "low"],
        "unprofitable",
    ).astype(object)


def strategy(tier: np.ndarray, band: np.ndarray, params: ScoreParams) -> np.ndarray:
    """The value x risk matrix cell of each row."""
    out = np.empty(len(tier), dtype=object)
    for t, by_band in params.strategy.items():
        for b, action in by_band.items():
            out[(tier == t) & (band == b)] = action
    return out


def reason_families(features: Sequence[str], params: ScoreParams) -> list[str | None]:
    """The reason family of each feature: None for a non-actionable feature, else the first family with a
    matching pattern, else the fallback."""
    out: list[str | None] = []
    for name in features:
        if any(fnmatchcase(name, p) for p in params.non_actionable):
            out.append(None)
            continue
        family = next(
            (
                f
                for f, patterns in params.reason_families.items()
                if any(fnmatchcase(name, p) for p in patterns)
            ),
            params.fallback_family,
        )
        out.append(family)
    return out


def top_reasons(
    contributions: np.ndarray, features: Sequence[str], params: ScoreParams
) -> tuple[list[list[dict[str, Any]]], np.ndarray]:
    """Per row the top ``reasons_top`` risk-raising actionable features and the churn type.

    ``contributions``: rows x (features + 1) SHAP values, the last column the bias (as
    ``ModelFamily.contributions`` returns them). The churn type is the family of the largest single
    risk-raising contribution (a sum would let the family with the most features win); non-actionable
    features (``score.non_actionable``) are neither reasons nor types. A row whose actionable features
    all lower its risk gets no reason and a null churn type.
    """
    n = len(features)
    families = reason_families(features, params)
    actionable = np.array([f is not None for f in families])
    c = np.where(actionable[None, :], np.asarray(contributions, dtype=float)[:, :n], -np.inf)
    k = min(params.reasons_top, n)
    order = np.argsort(-c, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(c, order, axis=1)
    reasons = [
        [
            {"feature": features[j], "contribution": float(v), "family": families[j]}
            for j, v in zip(row_order, row_values, strict=True)
            if v > 0
        ]
        for row_order, row_values in zip(order, values, strict=True)
    ]
    index = np.array([REASON_FAMILIES.index(f) if f is not None else -1 for f in families])
    by_family = np.zeros((len(c), len(REASON_FAMILIES)))
    for j in range(len(REASON_FAMILIES)):
        members = index == j
        if members.any():
            by_family[:, j] = np.clip(c[:, members], 0.0, None).max(axis=1)
    main = np.asarray(REASON_FAMILIES, dtype=object)[by_family.argmax(axis=1)]
    churn_type = np.where(by_family.max(axis=1) > 0, main, np.array(None, dtype=object))
    return reasons, churn_type


def value_columns(trend_months: int) -> tuple[str, str]:
    """The columns a line's value is read from, in order: its ARPU over the feature trend window, else (no
    bill yet) its plan's monthly fee, which is what the line brings."""
    return avg_col("arpu", trend_months), "monthly_fee"


def drift_feature_columns(family: ModelFamily) -> list[str]:
    """The features whose drift the family monitors (besides its score)."""
    return [c for c in (family.drift.columns if family.drift else []) if c != "score"]


def score_frame(
    family: ModelFamily, frame: pd.DataFrame, params: ScoreParams, *, trend_months: int
) -> pd.DataFrame:
    """Score one batch of feature rows (:data:`SCORED_SCHEMA`); the Spark pass applies it batch by batch.

    ``trend_months``: the feature trend window (``features.trend_months``), which names the ARPU column.
    """
    cohort, raw, proba, monitored = family.score(frame)
    arpu = pd.Series(np.nan, index=frame.index)
    for column in value_columns(trend_months):
        if column in frame.columns:
            arpu = arpu.fillna(pd.to_numeric(frame[column], errors="coerce"))
    arpu_3m = arpu.to_numpy(dtype=float)
    band, tier = risk_band(proba, params), value_tier(arpu_3m, params)
    segments = family.segments.assign(frame) if family.segments is not None else np.full(len(frame), None)
    hard = frame["hard_warning"] if "hard_warning" in frame.columns else pd.Series(False, index=frame.index)
    return pd.DataFrame(
        {
            "subscriber_id": frame["subscriber_id"].to_numpy(),
            "customer_id": frame.get("customer_id"),
            "household_id": frame.get("household_id"),
            "cohort": cohort,
            "tenure_months": pd.to_numeric(frame[family.spec.tenure], errors="coerce").astype("Int32"),
            "lifecycle_stage": frame.get("lifecycle_stage"),
            "hard_warning": hard.fillna(False).astype(bool).to_numpy(),
            "arpu_3m": arpu_3m,
            "churn_probability": proba,
            "raw_score": raw,
            "risk_band": band,
            "value_tier": tier,
            "strategy": strategy(tier, band, params),
            "usage_segment": segments,
            "drift_bins": drift_bins(family.drift, monitored, len(frame)),
        }
    )


def reason_frame(family: ModelFamily, frame: pd.DataFrame, params: ScoreParams) -> pd.DataFrame:
    """SHAP reasons and churn type of each row (:data:`REASONS_SCHEMA`)."""
    contrib, names = family.contributions(frame)
    reasons, churn_type = top_reasons(contrib, names[:-1], params)
    return pd.DataFrame(
        {"subscriber_id": frame["subscriber_id"].to_numpy(), "reasons": reasons, "churn_type": churn_type}
    )


def drift_bins(profile: DriftProfile | None, monitored: dict[str, np.ndarray], rows: int) -> list[Any]:
    """Per row, the drift bin of each monitored column in the profile's column order (empty without one)."""
    if profile is None:
        return [[] for _ in range(rows)]
    return list(np.column_stack([profile.bins(c, monitored[c]) for c in profile.columns]))


def drift_psi(profile: DriftProfile, counts: Iterable[tuple[int, int, int]]) -> dict[str, float]:
    """The PSI of each monitored column against training, from ``(column index, bin, rows)`` counts of the
    bins :func:`drift_bins` gave (a column without any count has a NaN PSI)."""
    hist = {name: np.zeros(profile.n_bins(name)) for name in profile.columns}
    for column, index, rows in counts:
        hist[profile.columns[column]][index] += rows
    return {name: profile.psi(name, h) for name, h in hist.items()}
