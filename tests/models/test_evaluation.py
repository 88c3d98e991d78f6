"""What the warning list and the offers were worth: effect intervals, shrinkage, metrics from bins."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models.evaluation import (
    binned_metrics,
    campaign_effect,
    pooled_effect,
    shrunk_effect,
    standardised_effect,
)
from models.metrics import classification_metrics


def test_campaign_effect_intervals_cover_the_true_effect_and_shrinkage_follows_evidence():
    rng = np.random.default_rng(4)
    covered = 0
    for _ in range(300):
        t = int((rng.random(2000) < 0.10).sum())  # treated churn 10 %
        h = int((rng.random(500) < 0.30).sum())  # held-out churn 30 %: the offer prevents 0.2
        e = campaign_effect(2000, t, 500, h)
        covered += e["effect_low"] <= 0.2 <= e["effect_high"]
    assert 0.91 <= covered / 300 <= 0.99  # a 95 % interval
    e = campaign_effect(1000, 100, 1000, 300)
    assert e["effect"] == pytest.approx(0.2) and e["relative_effect"] == pytest.approx(2 / 3)
    # thin evidence stays near the prior, a precise measurement moves to it, in either sign
    assert shrunk_effect(2 / 3, 0.1, 0.1, 0.1) == pytest.approx((2 / 3 + 0.1) / 2)
    assert shrunk_effect(2 / 3, 1.0, 0.1, 0.1) == pytest.approx((2 / 3 + 100 * 0.1) / 101)
    assert abs(shrunk_effect(-0.5, 0.001, 0.1, 0.1) + 0.5) < 0.001
    assert shrunk_effect(float("nan"), 0.1, 0.1, 0.1) == 0.1


def test_binned_metrics_equal_the_line_level_metrics():
    rng = np.random.default_rng(6)
    p = np.round(rng.beta(1, 12, 20000), 4)
    y = rng.random(20000) < p
    bins = (
        pd.DataFrame({"probability": p, "churners": y.astype(int), "stayers": (~y).astype(int)})
        .groupby("probability", as_index=False)
        .sum()
    )
    got, want = binned_metrics(bins), classification_metrics(y, p)
    for metric in ("rows", "churn_rate", "roc_auc", "pr_auc", "brier", "top_decile_lift", "empc"):
        assert got[metric] == pytest.approx(want[metric], rel=1e-9), metric
    # the calibration fit weighs each bin by its lines: the same maximum-likelihood fit
    for metric in ("calibration_slope", "calibration_intercept"):
        assert got[metric] == pytest.approx(want[metric], rel=1e-7), metric


def _two_strata(treated_rates: tuple[float, float], holdout_rates: tuple[float, float]) -> pd.DataFrame:
    """1,000 lines per stratum, a 10 % control in the first and 50 % in the second, at these churn rates."""
    treated, holdout = np.array([900, 500]), np.array([100, 500])
    return pd.DataFrame(
        {
            "treated": treated,
            "treated_churners": treated * np.array(treated_rates),
            "holdout": holdout,
            "holdout_churners": holdout * np.array(holdout_rates),
        }
    )


def _with_a_lone_stratum(strata: pd.DataFrame) -> pd.DataFrame:
    """Plus a stratum without a control, which carries no information."""
    lone = {"treated": 50, "treated_churners": 50, "holdout": 0, "holdout_churners": 0}
    return pd.concat([strata, pd.DataFrame([lone])])


def test_pooled_effect_removes_the_bias_of_unequal_control_shares_across_strata():
    # two strata, the offer prevents 5 points of churn in both; the control share differs (10 % in the
    # high-risk stratum, 50 % in the low-risk one), so the crude comparison mixes the strata's rates
    strata = _two_strata((0.25, 0.05), (0.30, 0.10))
    crude = campaign_effect(1400, 225 + 25, 600, 30 + 50)
    assert crude["effect"] < -0.03  # the crude difference even has the wrong sign
    pooled = pooled_effect(strata)
    assert pooled["effect"] == pytest.approx(0.05)
    assert pooled["effect_low"] < 0.05 < pooled["effect_high"]
    assert pooled["p_value"] < 0.05 and pooled["treated"] == 1400 and pooled["holdout"] == 600
    assert pooled_effect(_with_a_lone_stratum(strata))["effect"] == pytest.approx(0.05)


def test_the_standardised_effect_is_the_average_over_the_lines_of_every_stratum():
    # offer A prevents 10 points among 1,000 lines with a 10 % control, offer B none among 1,000 with 50 %:
    # over the 2,000 lines the offers prevented 5 points; the crude comparison says otherwise
    strata = _two_strata((0.20, 0.05), (0.30, 0.05))
    crude = campaign_effect(1400, 180 + 25, 600, 30 + 25)
    assert crude["effect"] < 0
    got = standardised_effect(strata)
    assert got["effect"] == pytest.approx(0.05)
    se = math.sqrt(0.5**2 * (0.3 * 0.7 / 100 + 0.2 * 0.8 / 900) + 0.5**2 * (0.05 * 0.95 / 500) * 2)
    assert got["effect_high"] - got["effect"] == pytest.approx(1.959964 * se, rel=1e-6)
    assert standardised_effect(_with_a_lone_stratum(strata))["effect"] == pytest.approx(0.05)
    # the rates over the lines: treated 0.5 x 0.20 + 0.5 x 0.05, hold-out 0.5 x 0.30 + 0.5 x 0.05
    assert (got["churn_rate_treated"], got["churn_rate_holdout"]) == pytest.approx((0.125, 0.175))
    assert got["relative_effect"] == pytest.approx(1 - 0.125 / 0.175)
    assert got["relative_low"] < got["relative_effect"] < got["relative_high"]


def test_pooled_intervals_cover_the_true_effect_and_the_test_holds_its_level():
    rng = np.random.default_rng(11)
    rates = np.array([0.04, 0.10, 0.25])  # control churn per stratum
    effect = 0.3  # relative: the offer removes 30 % of the churn everywhere
    covered_diff = covered_rel = rejected_null = 0
    for _ in range(300):
        n1, n0 = rng.integers(200, 800, 3), rng.integers(40, 200, 3)
        strata = pd.DataFrame(
            {
                "treated": n1,
                "treated_churners": rng.binomial(n1, rates * (1 - effect)),
                "holdout": n0,
                "holdout_churners": rng.binomial(n0, rates),
            }
        )
        e = pooled_effect(strata)
        w = n1 * n0 / (n1 + n0)
        true_diff = float((w * rates * effect).sum() / w.sum())
        covered_diff += e["effect_low"] <= true_diff <= e["effect_high"]
        covered_rel += e["relative_low"] <= effect <= e["relative_high"]
        null = strata.assign(treated_churners=rng.binomial(n1, rates))
        rejected_null += pooled_effect(null)["p_value"] < 0.05
    assert 0.91 <= covered_diff / 300 <= 0.99
    assert 0.91 <= covered_rel / 300 <= 0.99
    assert rejected_null / 300 <= 0.09
