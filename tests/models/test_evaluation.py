"""What the warning list and the offers were worth: effect intervals, shrinkage, metrics from bins."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.evaluation import binned_metrics, campaign_effect, shrunk_effect
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
    # thin evidence stays near the prior, a large comparison moves to the measurement
    assert shrunk_effect(2 / 3, 20, 5, 0.1, 200) == pytest.approx((4 * 2 / 3 + 100 * 0.1) / 104)
    assert abs(shrunk_effect(2 / 3, 100_000, 100_000, 0.1, 200) - 2 / 3) < 0.002
    assert shrunk_effect(float("nan"), 10, 0, 0.1, 200) == 0.1


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
