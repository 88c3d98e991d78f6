"""Calibrators on planted miscalibration: Platt recovers a planted logistic map, isotonic a planted step,
weights act as repeated rows, and a cohort without enough churners shares the pooled calibrator."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import SHARED_REASON, Calibrator, fit_calibrators, logit


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-z))


def test_logit_is_the_inverse_of_the_sigmoid_and_finite_at_the_ends():
    p = np.array([0.01, 0.2, 0.5, 0.9])
    np.testing.assert_allclose(_sigmoid(logit(p)), p, rtol=1e-12)
    assert logit(np.array([0.5]))[0] == 0.0
    assert np.isfinite(logit(np.array([0.0, 1.0]))).all()


def test_platt_recovers_a_planted_logistic_map():
    rng = np.random.default_rng(1)
    raw = rng.uniform(0.01, 0.99, 200_000)
    truth = _sigmoid(0.5 * logit(raw) - 1.0)  # an overconfident model, shifted
    y = (rng.random(len(raw)) < truth).astype(float)
    calibrator = Calibrator("platt").fit(raw, y, np.ones(len(raw)))
    grid = np.array([0.05, 0.2, 0.5, 0.8, 0.95])
    np.testing.assert_allclose(calibrator.predict(grid), _sigmoid(0.5 * logit(grid) - 1.0), atol=0.01)


def test_isotonic_recovers_a_planted_step_and_stays_monotone_within_0_1():
    rng = np.random.default_rng(2)
    raw = rng.uniform(0, 1, 100_000)
    y = (rng.random(len(raw)) < np.where(raw < 0.5, 0.1, 0.6)).astype(float)
    calibrator = Calibrator("isotonic").fit(raw, y, np.ones(len(raw)))
    assert calibrator.predict(np.array([0.1, 0.3]))[0] == pytest.approx(0.1, abs=0.02)
    assert calibrator.predict(np.array([0.7, 0.9]))[1] == pytest.approx(0.6, abs=0.02)
    grid = np.linspace(-1, 2, 301)  # beyond the fitted range: clipped
    out = calibrator.predict(grid)
    assert (np.diff(out) >= 0).all() and out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("method", ["platt", "isotonic"])
def test_a_weight_counts_as_that_many_repeated_rows(method):
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 1, 400)
    y = (rng.random(400) < raw).astype(float)
    w = rng.integers(1, 4, 400).astype(float)
    weighted = Calibrator(method).fit(raw, y, w)
    repeat = np.repeat(np.arange(400), w.astype(int))
    repeated = Calibrator(method).fit(raw[repeat], y[repeat], np.ones(len(repeat)))
    grid = np.linspace(0, 1, 51)
    np.testing.assert_allclose(weighted.predict(grid), repeated.predict(grid), atol=1e-6)


def test_each_cohort_with_enough_churners_gets_its_own_calibrator_the_others_share_one():
    rng = np.random.default_rng(4)
    n = 6000
    cohort = rng.choice(np.array(["new", "early", "established"], dtype=object), n, p=[0.3, 0.69, 0.01])
    raw = rng.uniform(0.01, 0.99, n)
    # the new cohort's model underestimates, the early one's overestimates
    truth = np.where(cohort == "new", _sigmoid(logit(raw) + 1.0), _sigmoid(logit(raw) - 1.0))
    y = (rng.random(n) < truth).astype(float)
    y[cohort == "established"] = 0.0
    y[np.flatnonzero(cohort == "established")[:3]] = 1.0  # 3 churners: below the minimum of 10
    w = np.ones(n)
    calibrators, how = fit_calibrators(
        raw, y, w, cohort, ["new", "early", "established"], method="platt", min_positives=10
    )
    assert how == {"new": "own", "early": "own", "established": SHARED_REASON}
    grid = np.array([0.2, 0.5, 0.8])
    for name in ("new", "early"):  # each own calibrator is the one fitted on its rows alone
        rows = cohort == name
        alone = Calibrator("platt").fit(raw[rows], y[rows], w[rows])
        np.testing.assert_allclose(calibrators[name].predict(grid), alone.predict(grid), rtol=1e-9)
    np.testing.assert_allclose(calibrators["new"].predict(grid), _sigmoid(logit(grid) + 1.0), atol=0.06)
    shared = Calibrator("platt").fit(raw, y, w)
    np.testing.assert_allclose(calibrators["established"].predict(grid), shared.predict(grid), rtol=1e-9)
