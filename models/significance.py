"""Significance tests of the promotion gates (pure): is a difference more than chance?

- :func:`paired_auc_difference`: is a new model's ROC AUC lower than the old one's on the same rows?
- :func:`calibration_error_p_value`: is a model's calibration error larger than a calibrated model's
  would be on the same rows?
- :func:`calibration_slope_p_value`: is the calibration slope different from 1?

With a few dozen churners every one of these figures moves by chance alone (a calibrated model's
calibration error is then a sizeable fraction of the churn rate): the gates refuse a model only where
the figure is beyond its threshold and the test says chance does not explain it.

Both models score the same labelled rows, so their AUCs are correlated and must be compared paired: the
bootstrap resamples rows (churners among churners and non-churners among non-churners, so that every
resample has both classes, as pROC's ``roc.test`` does), computes both AUCs on each resample and reads
the spread of their difference.

Each AUC is the rank (Mann-Whitney) statistic, ties counting half, computed for a block of resamples at
once and without sorting again: churners are few, so each non-churner is placed once among the sorted
churner scores of each model, a resample's non-churners become a histogram over those places, and the
churners a non-churner ranks below are a cumulative sum of that histogram.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from models.metrics import CalibrationFit, equal_frequency_bins, label_vectors

# resampled draws of this many cells at a time (int64: 32 MB), whatever the number of rows
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class AucDifference:
    """The paired comparison of a new model's AUC with an old one's on the same rows.

    ``difference`` is new - old; ``ci_low`` .. ``ci_high`` its two-sided percentile interval at
    ``confidence``; ``p_value`` the one-sided bootstrap p-value of "the new AUC is not lower"
    (small: the new model ranks significantly worse).
    """

    auc_new: float
    auc_old: float
    difference: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    rounds: int


@dataclass(frozen=True)
class _Placed:
    """One model's scores as the rank statistic needs them.

    ``churner_order`` sorts the churners by score; a non-churner ranks below the churners from ``below``
    on (the number of churners scoring at most its score) and ties with those from ``tied`` to
    ``below`` (``tied``: the number scoring strictly less; None where no non-churner ties a churner,
    as with continuous scores, which halves the work).
    """

    churner_order: np.ndarray
    below: np.ndarray
    tied: np.ndarray | None


def _place(churner_scores: np.ndarray, other_scores: np.ndarray) -> _Placed:
    order = np.argsort(churner_scores, kind="stable")
    sorted_scores = churner_scores[order]
    # int32 places and draws: half the memory traffic of the gathers that dominate the bootstrap
    below = np.searchsorted(sorted_scores, other_scores, side="right").astype(np.int32)
    tied = np.searchsorted(sorted_scores, other_scores, side="left").astype(np.int32)
    return _Placed(churner_order=order, below=below, tied=None if np.array_equal(tied, below) else tied)


def _histograms(places: np.ndarray, draws: np.ndarray, weights: np.ndarray | None, bins: int) -> np.ndarray:
    """Per resample (row of ``draws``: non-churner indices), the drawn weight at each place
    (``weights`` None: every row weighs 1, and the weights are not gathered)."""
    k = draws.shape[0]
    cells = places[draws]
    cells += (np.arange(k, dtype=cells.dtype) * bins)[:, None]
    drawn = None if weights is None else weights[draws].ravel()
    return np.bincount(cells.ravel(), weights=drawn, minlength=k * bins).reshape(k, bins)


def _auc(placed: _Placed, churner_weights: np.ndarray, below: np.ndarray, tied: np.ndarray) -> np.ndarray:
    """AUC per resample from the churners' drawn weights (resamples x churners) and the histograms of
    non-churner weight by place (resamples x churners + 1)."""
    n1 = churner_weights.shape[1]
    # weight of non-churners strictly below, and at or below, the i-th churner by score
    strictly = np.cumsum(below, axis=1)[:, :n1]
    at_most = np.cumsum(tied, axis=1)[:, :n1]
    c = churner_weights[:, placed.churner_order]
    return np.sum(c * (strictly + at_most) / 2, axis=1) / (c.sum(axis=1) * below.sum(axis=1))


def _checked(y_true, y_score, sample_weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, s, w = label_vectors(y_true, y_score, sample_weight)
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    if not 0 < np.sum(y) < len(y):
        raise ValueError("the AUC needs both churners and non-churners")
    return y, s, w


def resampled_aucs(
    y_true, y_score, churner_draws: np.ndarray, other_draws: np.ndarray, sample_weight=None
) -> np.ndarray:
    """The AUC of each resample: row r holds the indices (into the churners and into the non-churners,
    each in the rows' order) drawn by resample r. The AUC of the rows as given is the resample drawing
    each row once."""
    y, s, w = _checked(y_true, y_score, sample_weight)
    churners, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    placed = _place(s[churners], s[others])
    draws = np.atleast_2d(churner_draws), np.atleast_2d(other_draws).astype(np.int32)
    return _resampled(placed, w[churners], w[others], *draws)


def _resampled(
    placed: _Placed, w1: np.ndarray, w0: np.ndarray | None, churner_draws: np.ndarray, other_draws: np.ndarray
) -> np.ndarray:
    """AUC per resample; ``w0`` None: every non-churner weighs 1."""
    n1 = len(w1)
    k = churner_draws.shape[0]
    cells = churner_draws + (np.arange(k) * n1)[:, None]
    c = np.bincount(cells.ravel(), weights=w1[churner_draws].ravel(), minlength=k * n1).reshape(k, n1)
    below = _histograms(placed.below, other_draws, w0, n1 + 1)
    tied = below if placed.tied is None else _histograms(placed.tied, other_draws, w0, n1 + 1)
    return _auc(placed, c, below, tied)


def rank_auc(y_true, y_score, sample_weight=None) -> float:
    """ROC AUC as the rank statistic (ties count half), with optional row weights: the value of
    ``sklearn.metrics.roc_auc_score``, by the computation the bootstrap repeats."""
    y = np.asarray(y_true, dtype=float)
    n1 = int(np.sum(y == 1))
    every = (np.arange(n1), np.arange(len(y) - n1))
    return float(resampled_aucs(y_true, y_score, *every, sample_weight=sample_weight)[0])


def paired_auc_difference(
    y_true,
    new_score,
    old_score,
    *,
    rounds: int,
    alpha: float,
    seed: int,
    sample_weight=None,
) -> AucDifference:
    """The AUC difference (new - old) on the same rows, by the stratified paired bootstrap.

    ``rounds`` resamples drawn from ``seed``, the same resamples for both models. The p-value of "the
    new AUC is not lower" is the share of resampled differences at or above zero,
    ``(1 + #{d* >= 0}) / (rounds + 1)``, at least ``1 / (rounds + 1)``; the interval is the percentile
    interval at ``1 - 2 alpha``, so it lies wholly below zero about when the one-sided test at ``alpha``
    finds the new model worse. Identical scores differ by exactly 0 on every resample: the interval
    [0, 0] and a p-value of 1.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    y, new, w = _checked(y_true, new_score, sample_weight)
    old = np.asarray(old_score, dtype=float)
    if old.shape != new.shape:
        raise ValueError(f"new scores {new.shape} and old scores {old.shape} differ in shape")
    churners, others = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n1, n0 = len(churners), len(others)
    w1 = w[churners]
    w0 = None if np.all(w[others] == 1) else w[others]
    placed_new = _place(new[churners], new[others])
    placed_old = _place(old[churners], old[others])
    every = (np.arange(n1)[None, :], np.arange(n0, dtype=np.int32)[None, :])
    auc_new = float(_resampled(placed_new, w1, w0, *every)[0])
    auc_old = float(_resampled(placed_old, w1, w0, *every)[0])
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n0)
    diffs = np.empty(rounds)
    for start in range(0, rounds, block):
        k = min(block, rounds - start)
        churner_draws = rng.integers(0, n1, size=(k, n1))
        other_draws = rng.integers(0, n0, size=(k, n0), dtype=np.int32)
        diffs[start : start + k] = _resampled(placed_new, w1, w0, churner_draws, other_draws) - _resampled(
            placed_old, w1, w0, churner_draws, other_draws
        )
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return AucDifference(
        auc_new=auc_new,
        auc_old=auc_old,
        difference=auc_new - auc_old,
        ci_low=float(low),
        ci_high=float(high),
        confidence=1 - 2 * alpha,
        p_value=float((1 + np.sum(diffs >= 0)) / (rounds + 1)),
        rounds=rounds,
    )


def calibration_error_p_value(
    y_true, y_prob, *, rounds: int, seed: int, n_bins: int = 10, sample_weight=None
) -> float:
    """How often a calibrated model shows a calibration error at least as large on these rows.

    Consistency resampling (Bröcker and Smith 2007): ``rounds`` sets of labels drawn from the
    probabilities themselves, each scored with the same equal-frequency bins as
    :func:`~models.metrics.expected_calibration_error`; the p-value is
    ``(1 + #{ece* >= ece}) / (rounds + 1)``. Small: the error is more than chance explains.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    y, p, w = label_vectors(y_true, y_prob, sample_weight)
    if not len(y):
        raise ValueError("no rows")
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    starts = equal_frequency_bins(w, n_bins)
    total = np.sum(w)
    expected = np.add.reduceat(w * p, starts)  # churners each bin expects
    observed = np.sum(np.abs(np.add.reduceat(w * y, starts) - expected)) / total
    unit = bool(np.all(w == 1))
    # single-precision uniforms: half the memory traffic, and a probability's rounding is far below
    # what the test can see
    p32 = p.astype(np.float32)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // len(y))
    at_least = 0
    for start in range(0, rounds, block):
        k = min(block, rounds - start)
        drawn = rng.random((k, len(y)), dtype=np.float32) < p32
        churners = (
            np.add.reduceat(drawn, starts, axis=1, dtype=np.float64)
            if unit
            else np.add.reduceat(drawn * w, starts, axis=1)
        )
        errors = np.sum(np.abs(churners - expected), axis=1) / total
        # the observed error less a rounding margin: a resample equal to it counts as at least as large
        at_least += int(np.sum(errors >= observed - 1e-12))
    return (1 + at_least) / (rounds + 1)


def calibration_slope_p_value(fit: CalibrationFit) -> float:
    """Two-sided Wald p-value of "the calibration slope is 1" (NaN where the slope is undefined)."""
    if not np.isfinite(fit.slope) or not np.isfinite(fit.slope_se) or fit.slope_se <= 0:
        return float("nan")
    return float(2 * stats.norm.sf(abs(fit.slope - 1) / fit.slope_se))
