"""What the warning list and the offers were worth, once labels matured (pure).

- :func:`binned_metrics`: the model metrics (AUC, lift, calibration error, EMPC, ...) from counts of
  churners and stayers per probability bin, so a distributed job aggregates and never collects lines;
- :func:`campaign_effect`: churn of the treated against the control group, the difference with its
  Newcombe interval and the relative effect with the interval of the risk ratio (statsmodels);
- :func:`pooled_effect`: the same pooled across strata (score months, cohorts, risk bands) by
  Mantel-Haenszel weights, with the Cochran-Mantel-Haenszel test of no effect, so that strata with
  different churn rates and control shares do not mix into a biased average;
- :func:`shrunk_effect`: the measured relative effect of an offer averaged with its prior, each weighted
  by its precision; negative effects are kept (an offer can raise churn).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import norm
from statsmodels.stats.contingency_tables import StratifiedTable
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
    and the relative effect (the share of the hold-out's churn the offer prevented: 1 - risk ratio) with
    the interval of the risk ratio."""
    nan = float("nan")
    rate_t = treated_churners / treated if treated else nan
    rate_h = holdout_churners / holdout if holdout else nan
    low = high = rel_low = rel_high = nan
    if treated and holdout:
        alpha = 1 - confidence
        low, high = confint_proportions_2indep(
            holdout_churners, holdout, treated_churners, treated, method="newcomb", compare="diff",
            alpha=alpha,
        )  # fmt: skip
        if holdout_churners:
            ratio_low, ratio_high = confint_proportions_2indep(
                treated_churners, treated, holdout_churners, holdout, method="log-adjusted",
                compare="ratio", alpha=alpha,
            )  # fmt: skip
            rel_low, rel_high = 1 - ratio_high, 1 - ratio_low
    effect = rate_h - rate_t
    relative = effect / rate_h if rate_h and not math.isnan(rate_h) else nan
    return {
        "churn_rate_treated": rate_t,
        "churn_rate_holdout": rate_h,
        "effect": effect,
        "effect_low": float(low),
        "effect_high": float(high),
        "relative_effect": relative,
        "relative_low": float(rel_low),
        "relative_high": float(rel_high),
    }


def pooled_effect(strata: pd.DataFrame, confidence: float = 0.95) -> dict[str, float]:
    """The effect pooled over ``strata`` (one row each: ``treated``, ``treated_churners``, ``holdout``,
    ``holdout_churners``; strata without both arms carry no information and are left out).

    The difference (hold-out - treated churn) is the Mantel-Haenszel risk difference with its
    Greenland-Robins variance; the relative effect is 1 - the Mantel-Haenszel risk ratio (variance of
    its log by Greenland and Robins); ``p_value`` is the Cochran-Mantel-Haenszel test of no effect.
    """
    nan = float("nan")
    s = strata[(strata["treated"] > 0) & (strata["holdout"] > 0)]
    n1, a = s["treated"].to_numpy(float), s["treated_churners"].to_numpy(float)
    n0, c = s["holdout"].to_numpy(float), s["holdout_churners"].to_numpy(float)
    out = {
        "treated": float(n1.sum()),
        "holdout": float(n0.sum()),
        "effect": nan,
        "effect_low": nan,
        "effect_high": nan,
        "relative_effect": nan,
        "relative_low": nan,
        "relative_high": nan,
        "se_relative": nan,
        "p_value": nan,
    }
    if len(s) == 0:
        return out
    z = float(norm.ppf(0.5 + confidence / 2))
    total = n1 + n0
    weight = n1 * n0 / total
    diff = float(((c * n1 - a * n0) / total).sum() / weight.sum())  # control rate - treated rate
    b, d = n1 - a, n0 - c
    # Greenland-Robins (1985) variance of the Mantel-Haenszel risk difference
    var_diff = float(((a * b * n0**3 + c * d * n1**3) / (n1 * n0 * total**2)).sum() / weight.sum() ** 2)
    se_diff = math.sqrt(max(var_diff, 0.0))
    out.update(effect=diff, effect_low=diff - z * se_diff, effect_high=diff + z * se_diff)
    r, q = float((a * n0 / total).sum()), float((c * n1 / total).sum())
    if r > 0 and q > 0:
        ratio = r / q  # treated risk / control risk
        var_log = float(((n1 * n0 * (a + c) - a * c * total) / total**2).sum() / (r * q))
        se_log = math.sqrt(max(var_log, 0.0))
        out.update(
            relative_effect=1 - ratio,
            relative_low=1 - ratio * math.exp(z * se_log),
            relative_high=1 - ratio * math.exp(-z * se_log),
            se_relative=ratio * se_log,
        )
    if (a + c).sum() > 0 and (b + d).sum() > 0:
        tables = np.stack([np.stack([a, b], axis=1), np.stack([c, d], axis=1)], axis=1)  # k x 2 x 2
        out["p_value"] = float(
            StratifiedTable(tables.transpose(1, 2, 0)).test_null_odds(correction=True).pvalue
        )
    return out


def standardised_effect(strata: pd.DataFrame, confidence: float = 0.95) -> dict[str, float]:
    """The effect over the lines of all ``strata`` (rows as :func:`pooled_effect`'s): each stratum's churn
    rates weighted by its share of the lines; the difference (hold-out - treated) with a Wald interval,
    the relative effect (1 - the ratio of the rates) with a delta-method interval.

    Where the control share differs by stratum (each offer its own control size), the crude comparison
    mixes the strata's churn rates; this estimates the average effect over the strata's lines, which is
    what the same offers had on the same lines (the Mantel-Haenszel estimate weighs by information
    instead). Strata without both arms are left out and the weights renormalised.
    """
    nan = float("nan")
    names = ("churn_rate_treated", "churn_rate_holdout", "effect", "effect_low", "effect_high")
    out = dict.fromkeys((*names, "relative_effect", "relative_low", "relative_high"), nan)
    s = strata[(strata["treated"] > 0) & (strata["holdout"] > 0)]
    if len(s) == 0:
        return out
    n1, n0 = s["treated"].to_numpy(float), s["holdout"].to_numpy(float)
    p1, p0 = s["treated_churners"].to_numpy(float) / n1, s["holdout_churners"].to_numpy(float) / n0
    w = (n1 + n0) / (n1 + n0).sum()
    rate1, rate0 = float((w * p1).sum()), float((w * p0).sum())
    var1, var0 = float((w**2 * p1 * (1 - p1) / n1).sum()), float((w**2 * p0 * (1 - p0) / n0).sum())
    effect, se = rate0 - rate1, math.sqrt(var1 + var0)
    z = float(norm.ppf(0.5 + confidence / 2))
    out.update(zip(names, (rate1, rate0, effect, effect - z * se, effect + z * se), strict=True))
    if rate1 > 0 and rate0 > 0:
        ratio = rate1 / rate0  # the relative effect is 1 - ratio; its log's variance by the delta method
        se_log = math.sqrt(var1 / rate1**2 + var0 / rate0**2)
        out.update(
            relative_effect=1 - ratio,
            relative_low=1 - ratio * math.exp(z * se_log),
            relative_high=1 - ratio * math.exp(-z * se_log),
        )
    return out


def shrunk_effect(relative: float, se: float, prior: float, prior_sd: float) -> float:
    """The measured relative effect and the prior averaged with weights 1 / variance (a normal prior and
    likelihood): thin evidence stays near the prior, strong evidence moves away from it, in either sign."""
    if math.isnan(relative) or math.isnan(se):
        return prior
    if se == 0:
        return float(relative)
    w, w_prior = 1 / se**2, 1 / prior_sd**2
    return float((w * relative + w_prior * prior) / (w + w_prior))
