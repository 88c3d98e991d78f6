"""What a score means to a retention team (pure): risk band, value tier, strategy, reasons, churn type.

Every function works on numpy arrays (one entry per subscriber) and :class:`~models.params.ScoreParams`,
so the Spark stage applies them batch by batch and a notebook applies them to a pandas frame.

Reasons are the largest positive SHAP contributions (log-odds, LightGBM's own ``pred_contrib`` of the
model serving the row's cohort): the features that push this subscriber's risk up. Each feature belongs
to one reason family by the configured name patterns; the churn type is the family whose features push
the risk up the most in total.
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any

import numpy as np

from models.params import REASON_FAMILIES, RISK_BANDS, ScoreParams


def risk_band(probability: np.ndarray, params: ScoreParams) -> np.ndarray:
    """``high`` / ``medium`` / ``low`` by the configured probability thresholds."""
    p = np.asarray(probability, dtype=float)
    return np.where(p >= params.band_high, "high", np.where(p >= params.band_medium, "medium", "low")).astype(
        object
    )


def band_at_least(band: np.ndarray, floor: str) -> np.ndarray:
    """Rows whose band is ``floor`` or riskier."""
    return np.isin(band, RISK_BANDS[RISK_BANDS.index(floor) :])


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


def reason_families(features: Sequence[str], params: ScoreParams) -> list[str]:
    """The reason family of each feature: the first family with a matching pattern, else the fallback."""
    out = []
    for name in features:
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
    """Per row the top ``reasons_top`` risk-raising features and the churn type.

    ``contributions``: rows x (features + 1) SHAP values, the last column the bias (as
    ``ModelFamily.contributions`` returns them). A row whose features all lower its risk gets no reason
    and a null churn type.
    """
    n = len(features)
    c = np.asarray(contributions, dtype=float)[:, :n]
    families = reason_families(features, params)
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
    one_hot = np.zeros((n, len(REASON_FAMILIES)))
    one_hot[np.arange(n), [REASON_FAMILIES.index(f) for f in families]] = 1.0
    by_family = np.clip(c, 0.0, None) @ one_hot
    main = np.asarray(REASON_FAMILIES, dtype=object)[by_family.argmax(axis=1)]
    churn_type = np.where(by_family.max(axis=1) > 0, main, None)
    return reasons, churn_type
