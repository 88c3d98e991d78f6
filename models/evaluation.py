"""What the warning list and the offers were worth, once labels matured (pure).

- :func:`binned_metrics`: the model metrics (AUC, lift, calibration error, EMPC, ...) from counts of
  churners and stayers per probability bin, so a distributed job aggregates and never collects lines;
- :func:`campaign_effect`: churn of the treated against the control group with a Newcombe confidence
  interval of the difference (statsmodels), acceptance and incremental retained revenue;
- :func:`shrunk_effect`: the measured relative effect of an offer, pulled toward its prior in
  proportion to how thin the evidence is; the matcher uses it instead of the prior.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep

from models.metrics import ProfitParams, classification_metrics


def binned_metrics(bins: pd.DataFrame, profit: ProfitParams | None = None) -> dict[str, float]:
    """``bins``: one row per probability value (``probability``, ``churners``, ``stayers``)."""
    p = bins["probability"].to_numpy(dtype=float)
    y = np.r_[np.ones(len(p)), np.zeros(len(p))]
    w = np.r_[bins["churners"].to_numpy(dtype=float), bins["stayers"].to_numpy(dtype=float)]
    keep = w > 0
    out = classification_metrics(y[keep], np.r_[p, p][keep], profit=profit, sample_weight=w[keep])
    out["rows"] = float(w.sum())
    return out


def campaign_effect(
    treated: int, treated_churners: int, holdout: int, holdout_churners: int, confidence: float = 0.95
) -> dict[str, float]:
    """Churn rates of both arms, the effect (hold-out rate - treated rate) and its confidence interval,
    and the relative effect (the share of the hold-out's churn the offer prevented)."""
    nan = float("nan")
    rate_t = treated_churners / treated if treated else nan
    rate_h = holdout_churners / holdout if holdout else nan
    low = high = nan
    if treated and holdout:
        low, high = confint_proportions_2indep(
            holdout_churners, holdout, treated_churners, treated, method="newcomb", compare="diff",
            alpha=1 - confidence,
        )  # fmt: skip
    effect = rate_h - rate_t
    relative = effect / rate_h if rate_h and not math.isnan(rate_h) else nan
    return {
        "churn_rate_treated": rate_t,
        "churn_rate_holdout": rate_h,
        "effect": effect,
        "effect_low": float(low),
        "effect_high": float(high),
        "relative_effect": relative,
    }


def shrunk_effect(relative: float, treated: int, holdout: int, prior: float, strength: float) -> float:
    """The measured relative effect, shrunk toward ``prior``: weights are the effective number of
    compared lines, ``1 / (1/treated + 1/holdout)``, against ``strength / 2`` for the prior."""
    if not treated or not holdout or math.isnan(relative):
        return prior
    n = 1 / (1 / treated + 1 / holdout)
    k = strength / 2
    return float(np.clip((n * relative + k * prior) / (n + k), 0.0, 1.0))
