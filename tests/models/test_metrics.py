"""Model metrics against scikit-learn, statsmodels, hand computations and an independent EMPC."""

import numpy as np
import pytest
from scipy.special import expit
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.metrics import (
    ProfitParams,
    calibration_fit,
    classification_metrics,
    empc,
    expected_calibration_error,
    lift_at,
)


@pytest.fixture(scope="module")
def scored():
    rng = np.random.default_rng(3)
    y = rng.random(4000) < 0.1
    p = np.clip(rng.beta(2, 12, 4000) + 0.25 * y * rng.random(4000), 0, 1)
    return y.astype(int), p


def test_sklearn_metrics_are_sklearns(scored):
    y, p = scored
    m = classification_metrics(y, p)
    assert m["roc_auc"] == roc_auc_score(y, p)
    assert m["pr_auc"] == average_precision_score(y, p)
    assert m["brier"] == brier_score_loss(y, p)
    assert m["rows"] == 4000 and m["churn_rate"] == pytest.approx(y.mean())


def test_lift_by_hand():
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0])
    assert lift_at(y, s, 0.2) == pytest.approx((1 / 2) / 0.2)  # top 2: one churner of two
    assert lift_at(y, s, 0.3) == pytest.approx((2 / 3) / 0.2)
    # ties are split evenly: the top 10% of a constant score holds the base rate
    assert lift_at(y, np.ones(10), 0.1) == pytest.approx(1.0)


def test_calibration_error_by_hand():
    # two equal-frequency bins: [0.1, 0.1] with 0 churners, [0.9, 0.9] with 2
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.1)
    assert expected_calibration_error(y, y.astype(float), n_bins=2) == 0.0


@pytest.mark.parametrize(
    "profit",
    [ProfitParams(), ProfitParams(clv=500, incentive_cost=50, contact_cost=5, alpha=2, beta=8)],
    ids=["defaults", "other economics"],
)
def test_empc_matches_the_empulse_package(scored, profit):
    from empulse.metrics import empc_score

    y, p = scored
    ours = empc(y, p, profit)
    kw = dict(
        clv=profit.clv,
        incentive_cost=profit.incentive_cost,
        contact_cost=profit.contact_cost,
        alpha=profit.alpha,
        beta=profit.beta,
    )
    assert ours.value == pytest.approx(empc_score(y, p, **kw), rel=1e-9)
    assert ours.fraction == pytest.approx(empc_score.optimal_rate(y, p, **kw), rel=1e-9)
    # a random score earns less than the model's
    assert empc(y, np.random.default_rng(0).random(len(y)), profit).value < ours.value


def test_undefined_metrics_are_nan_not_errors():
    m = classification_metrics(np.zeros(5), np.linspace(0, 1, 5))
    assert np.isnan(m["roc_auc"]) and np.isnan(m["empc"]) and m["churn_rate"] == 0.0
    assert np.isnan(m["relative_ece"]) and np.isnan(m["calibration_slope"])


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Labels drawn from known churn probabilities of about 3 % (so those probabilities are calibrated)."""
    rng = np.random.default_rng(seed)
    q = expit(-4.0 + 1.2 * rng.normal(size=n))
    return (rng.random(n) < q).astype(int), q, rng


def test_calibration_fit_is_statsmodels_logistic_regression():
    import statsmodels.api as sm

    y, q, rng = _calibrated(5000, seed=6)
    w = rng.integers(1, 4, size=len(q)).astype(float)
    for p in (q, q**1.5, np.sqrt(q)):
        assert p.min() > 1e-6  # no probability clipped before its logit
        x = np.log(p / (1 - p))
        want = sm.GLM(y, sm.add_constant(x), family=sm.families.Binomial(), freq_weights=w).fit()
        got = calibration_fit(y, p, sample_weight=w)
        assert (got.intercept, got.slope) == pytest.approx(tuple(want.params), rel=1e-6)
        assert got.slope_se == pytest.approx(want.bse[1], rel=1e-4)


def test_the_calibration_slope_of_a_squared_probability_is_outside_the_band():
    y, q, _ = _calibrated(20000, seed=7)
    calibrated, squared = calibration_fit(y, q), calibration_fit(y, q**2)
    assert 0.9 < calibrated.slope < 1.1
    # logit(p^2) is about 2 logit(p) where p is small: the slope halves, outside any band around 1
    assert 0.4 < squared.slope < 0.6
    m = classification_metrics(y, q**2)
    # the same fit (the metrics sort the rows first: sums in another order)
    assert m["calibration_slope"] == pytest.approx(squared.slope, rel=1e-9)
    assert m["calibration_intercept"] == pytest.approx(squared.intercept, rel=1e-9)


def test_calibration_fit_is_undefined_without_both_classes_or_spread():
    assert np.isnan(calibration_fit([0, 0, 0], [0.1, 0.2, 0.3]).slope)
    assert np.isnan(calibration_fit([0, 1, 0], [0.2, 0.2, 0.2]).slope)
    # perfectly separated: the slope grows without bound
    assert np.isnan(calibration_fit([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]).slope)


def test_relative_calibration_error_is_over_the_churn_rate():
    y, q, _ = _calibrated(5000, seed=8)
    m = classification_metrics(y, q * 1.5)
    assert m["relative_ece"] == pytest.approx(expected_calibration_error(y, q * 1.5) / y.mean(), rel=1e-12)
