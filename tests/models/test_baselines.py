"""The baselines and the shared LightGBM fit on planted data: the logistic baseline recovers a planted
linear score and imputes as documented; the booster is reproducible and early-stops on validation."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.baselines import fit_booster, fit_logistic, lgb_params
from models.params import ModelParams


def _linear(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two numeric columns and a category code (column 2) with a planted logistic truth."""
    rng = np.random.default_rng(seed)
    x = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 3, n).astype(float)])
    truth = 1 / (1 + np.exp(-(-1.0 + 1.5 * x[:, 0] - 1.0 * x[:, 1] + 1.2 * (x[:, 2] == 2))))
    return x, (rng.random(n) < truth).astype(float), truth


def test_the_logistic_baseline_ranks_like_the_planted_truth():
    x, y, _ = _linear(20_000, 1)
    model = fit_logistic(x, y, np.ones(len(y)), [2], c=1.0)
    xt, yt, truth = _linear(20_000, 2)
    p = model.predict_proba(xt)[:, 1]
    assert roc_auc_score(yt, p) == pytest.approx(roc_auc_score(yt, truth), abs=0.01)
    assert np.corrcoef(p, truth)[0, 1] > 0.99


def test_the_logistic_baseline_imputes_the_mean_and_groups_rare_categories():
    x, y, _ = _linear(5000, 3)
    x[:, 2] = np.where(np.arange(len(x)) < 10, 7.0, x[:, 2])  # a category of 10 rows: rarer than 20
    x[10:15, 2] = 9.0  # and another of 5
    model = fit_logistic(x, y, np.ones(len(y)), [2], c=1.0)
    row = np.array([[0.3, np.nan, 1.0]])
    mean = np.array([[0.3, x[:, 1].mean(), 1.0]])
    np.testing.assert_allclose(model.predict_proba(row), model.predict_proba(mean), rtol=1e-12)
    rare = model.predict_proba(np.array([[0.0, 0.0, 7.0], [0.0, 0.0, 9.0]]))[:, 1]
    assert rare[0] == rare[1]  # both in the infrequent group
    unseen = model.predict_proba(np.array([[0.0, 0.0, 42.0]]))  # never seen: no error
    assert np.isfinite(unseen).all()


def test_lgb_params_keep_the_configured_ones_and_pin_what_makes_a_fit_reproducible():
    p = ModelParams(lightgbm={"num_leaves": 7, "learning_rate": 0.1}, seed=11, num_threads=3)
    got = lgb_params(p)
    assert got["num_leaves"] == 7 and got["learning_rate"] == 0.1
    assert got["objective"] == "binary"  # the default when the config leaves it out
    assert (got["seed"], got["num_threads"], got["deterministic"]) == (11, 3, True)
    assert lgb_params(ModelParams(lightgbm={"objective": "cross_entropy"}))["objective"] == "cross_entropy"


def _datasets(seed: int, *, noise: bool) -> tuple[lgb.Dataset, lgb.Dataset, np.ndarray]:
    x, y, _ = _linear(4000, seed)
    xv, yv, _ = _linear(2000, seed + 1)
    if noise:  # labels unrelated to the features: validation loss stops improving at once
        rng = np.random.default_rng(seed)
        y, yv = (rng.random(len(y)) < 0.3).astype(float), (rng.random(len(yv)) < 0.3).astype(float)
    params = lgb_params(ModelParams(num_threads=1))
    train = lgb.Dataset(x, y, params=params).construct()
    return train, lgb.Dataset(xv, yv, reference=train, params=params).construct(), yv


def test_the_booster_is_reproducible_and_early_stops_on_validation():
    p = ModelParams(num_boost_round=300, early_stopping_rounds=10, num_threads=1)
    train, valid, yv = _datasets(5, noise=False)
    first = fit_booster(p, train, valid, yv)
    again = fit_booster(p, *_datasets(5, noise=False))
    assert first.model_to_string() == again.model_to_string()
    noisy = fit_booster(p, *_datasets(6, noise=True))
    assert noisy.num_trees() < 60  # stopped early: nothing to learn
    # one class among the validation labels: no early stopping, every round is grown
    train, valid, yv = _datasets(7, noise=False)
    p_short = ModelParams(num_boost_round=25, early_stopping_rounds=2, num_threads=1)
    assert fit_booster(p_short, train, valid, np.zeros_like(yv)).num_trees() == 25
