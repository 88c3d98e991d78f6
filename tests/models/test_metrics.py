"""Model metrics against scikit-learn, hand computations and an independent EMPC implementation."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from models.metrics import ProfitParams, classification_metrics, empc, expected_calibration_error, lift_at


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
