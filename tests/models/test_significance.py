"""The gates' significance tests against scikit-learn, DeLong's variance, hand cases and their own level."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import expit
from sklearn.metrics import roc_auc_score

from models.metrics import calibration_fit, expected_calibration_error
from models.significance import (
    calibration_error_p_value,
    calibration_slope_p_value,
    paired_auc_difference,
    rank_auc,
    resampled_aucs,
)


def _test_month(n: int, seed: int, rate: float = 0.03) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Labels drawn from known churn probabilities (so those probabilities are calibrated)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    q = expit(np.log(rate / (1 - rate)) - 0.5 + 1.2 * z)
    return (rng.random(n) < q).astype(int), q, rng


def _delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """AUC(a) - AUC(b) and its standard error by DeLong, DeLong and Clarke-Pearson (1988), written from the
    definition: every churner against every non-churner (an independent check of the bootstrap)."""
    pos, neg = y == 1, y == 0
    v10, v01 = [], []
    for s in (a, b):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.vstack(v10)), np.cov(np.vstack(v01))
    contrast = np.array([1.0, -1.0])
    var = contrast @ s10 @ contrast / pos.sum() + contrast @ s01 @ contrast / neg.sum()
    return float(v10[0].mean() - v10[1].mean()), float(np.sqrt(var))


def test_rank_auc_is_sklearns_with_ties_and_weights():
    y, q, rng = _test_month(3000, seed=1)
    tied = np.round(q, 2)  # many ties, churners tied with non-churners
    w = rng.random(3000) + 0.5
    assert rank_auc(y, q) == pytest.approx(roc_auc_score(y, q), abs=1e-12)
    assert rank_auc(y, tied) == pytest.approx(roc_auc_score(y, tied), abs=1e-12)
    assert rank_auc(y, tied, w) == pytest.approx(roc_auc_score(y, tied, sample_weight=w), abs=1e-12)


def test_resampled_aucs_are_sklearns_on_the_resampled_rows():
    y, q, rng = _test_month(2000, seed=2)
    score = np.round(q, 3)
    churners, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    draw1 = rng.integers(0, len(churners), size=(4, len(churners)))
    draw0 = rng.integers(0, len(others), size=(4, len(others)))
    got = resampled_aucs(y, score, draw1, draw0)
    for r in range(4):
        rows = np.r_[churners[draw1[r]], others[draw0[r]]]
        assert got[r] == pytest.approx(roc_auc_score(y[rows], score[rows]), abs=1e-12)


def test_identical_scores_differ_by_nothing_with_p_one():
    y, q, _ = _test_month(2000, seed=3)
    d = paired_auc_difference(y, q, q.copy(), rounds=500, alpha=0.05, seed=7)
    assert (d.difference, d.ci_low, d.ci_high, d.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert d.auc_new == d.auc_old == pytest.approx(roc_auc_score(y, q), abs=1e-12)


def test_a_hand_checked_difference():
    y = np.array([0, 0, 1, 1])
    new = np.array([0.1, 0.4, 0.35, 0.8])  # one of four churner/non-churner pairs misordered: 0.75
    old = np.array([0.1, 0.2, 0.3, 0.4])  # every pair in order: 1.0
    d = paired_auc_difference(y, new, old, rounds=200, alpha=0.05, seed=1)
    assert (d.auc_new, d.auc_old, d.difference) == (0.75, 1.0, -0.25)
    # no resample makes the new model better: every difference is at most 0 (a tie counts as "not lower")
    assert d.ci_high <= 0 and 1 / 201 <= d.p_value < 1


def test_the_bootstrap_spread_and_p_value_agree_with_delong():
    y, q, rng = _test_month(4000, seed=4)
    old = q
    new = expit(np.log(q / (1 - q)) + rng.normal(scale=0.6, size=len(q)))  # a noisier ranking
    diff, se = _delong(y, new, old)
    d = paired_auc_difference(y, new, old, rounds=2000, alpha=0.05, seed=11)
    assert d.difference == pytest.approx(diff, abs=1e-12)
    bootstrap_se = (d.ci_high - d.ci_low) / (2 * stats.norm.ppf(0.95))
    assert bootstrap_se == pytest.approx(se, rel=0.15)
    assert d.p_value == pytest.approx(stats.norm.cdf(diff / se), abs=0.03)
    assert d.confidence == pytest.approx(0.9) and d.rounds == 2000


def test_clearly_worse_scores_are_significantly_lower_and_a_tiny_drop_is_not():
    y, q, rng = _test_month(4000, seed=5)
    logit = np.log(q / (1 - q))
    worse = paired_auc_difference(
        y, logit + rng.normal(scale=2.0, size=len(q)), q, rounds=1000, alpha=0.05, seed=7
    )
    assert worse.difference < -0.05 and worse.ci_high < 0 and worse.p_value < 0.01
    tiny = paired_auc_difference(
        y, logit + rng.normal(scale=0.05, size=len(q)), q, rounds=1000, alpha=0.05, seed=7
    )
    assert -0.01 < tiny.difference < 0 and tiny.ci_low < 0 < tiny.ci_high and tiny.p_value > 0.05
    # the same seed draws the same resamples
    assert paired_auc_difference(y, logit, q * 0.9, rounds=300, alpha=0.05, seed=7) == paired_auc_difference(
        y, logit, q * 0.9, rounds=300, alpha=0.05, seed=7
    )


def test_paired_difference_refuses_bad_input():
    with pytest.raises(ValueError, match="both churners and non-churners"):
        paired_auc_difference(np.zeros(5), np.arange(5), np.arange(5), rounds=10, alpha=0.05, seed=1)
    with pytest.raises(ValueError, match="differ in shape"):
        paired_auc_difference([0, 1, 1], [0.1, 0.2, 0.3], [0.1, 0.2], rounds=10, alpha=0.05, seed=1)


def test_the_slope_of_a_squared_probability_is_significantly_not_one():
    y, q, _ = _test_month(20000, seed=7)
    assert calibration_slope_p_value(calibration_fit(y, q)) > 0.05
    assert calibration_slope_p_value(calibration_fit(y, q**2)) < 1e-6
    assert np.isnan(calibration_slope_p_value(calibration_fit([0, 0, 0], [0.1, 0.2, 0.3])))


def test_a_calibrated_models_error_is_chance_and_an_inflated_ones_is_not():
    y, q, _ = _test_month(3000, seed=9)
    # with about a hundred churners a calibrated model's error is still a good part of the churn rate
    assert expected_calibration_error(y, q) / y.mean() > 0.1
    assert calibration_error_p_value(y, q, rounds=1000, seed=3) > 0.05
    assert calibration_error_p_value(y, np.minimum(q * 2, 1), rounds=1000, seed=3) < 0.01


def test_the_calibration_p_value_is_uniform_for_calibrated_models():
    """Under calibration the test refuses at its level: about 5 % of calibrated models at alpha 0.05."""
    p_values = []
    for seed in range(200):
        y, q, _ = _test_month(600, seed=100 + seed, rate=0.05)
        p_values.append(calibration_error_p_value(y, q, rounds=200, seed=seed))
    assert 0.02 <= np.mean(np.array(p_values) < 0.05) <= 0.09
    assert np.mean(p_values) == pytest.approx(0.5, abs=0.06)
