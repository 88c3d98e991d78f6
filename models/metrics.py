"""Model metrics on arrays (pure): ranking, lift, calibration and the expected maximum profit for churn.

scikit-learn computes what it can (ROC AUC, average precision, Brier score, the ROC curve); lift,
calibration error, the calibration slope and EMPC are written here. EMPC follows Verbraken, Verbeke and
Baesens (2013): the profit of contacting the top of the list, with the acceptance rate of the retention
offer drawn from a Beta distribution, integrated exactly over the ROC convex hull.

Calibration is judged against the base rate: at a churn rate of a few percent an absolute calibration
error of 0.05 is larger than the rate itself, so the metrics also give the error relative to the churn
rate and Cox's calibration slope and intercept, which do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import Field
from scipy import stats
from scipy.special import expit
from sklearn.metrics import auc, average_precision_score, brier_score_loss, roc_curve

from features.params import BASE, Params


class ProfitParams(Params):
    """EMPC's economics: customer lifetime value, offer cost, contact cost, acceptance ~ Beta(alpha, beta)."""

    defaults_section: ClassVar[str | None] = "train.profit"

    clv: float = Field(default=BASE, gt=0)
    incentive_cost: float = Field(default=BASE, ge=0)
    contact_cost: float = Field(default=BASE, ge=0)
    alpha: float = Field(default=BASE, gt=0)
    beta: float = Field(default=BASE, gt=0)


def label_vectors(y_true, y_score, weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, scores and weights (ones when None) as float vectors of one length, or a ValueError."""
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"labels must be a vector, got shape {y.shape}")
    if y.shape != s.shape or y.shape != w.shape:
        raise ValueError(f"labels {y.shape}, scores {s.shape} and weights {w.shape} differ in shape")
    return y, s, w


def lift_at(y_true, y_score, fraction: float, sample_weight=None) -> float:
    """Churn rate among the top ``fraction`` by score over the overall churn rate (ties split evenly)."""
    y, s, w = label_vectors(y_true, y_score, sample_weight)
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    base = np.sum(w * y) / np.sum(w)
    if base == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y, w = s[order], y[order], w[order]
    budget = fraction * np.sum(w)
    # whole tie groups, then the boundary group pro rata: the result does not depend on row order
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    group_w, group_y = np.add.reduceat(w, starts), np.add.reduceat(w * y, starts)
    before = np.cumsum(group_w) - group_w  # weight of the groups above each group
    g = int(np.searchsorted(np.cumsum(group_w), budget, side="left"))
    g = min(g, len(group_w) - 1)
    share = min(1.0, (budget - before[g]) / group_w[g]) if group_w[g] else 0.0
    taken_w = before[g] + share * group_w[g]
    taken_y = np.sum(group_y[:g]) + share * group_y[g]
    return float((taken_y / taken_w) / base)


def equal_frequency_bins(w_sorted: np.ndarray, n_bins: int) -> np.ndarray:
    """Where each of (at most) ``n_bins`` equal-frequency bins starts among rows sorted by probability:
    a row falls in the bin of the middle of its weight."""
    cum = np.cumsum(w_sorted)
    bins = np.minimum((cum - w_sorted / 2) / cum[-1] * n_bins, n_bins - 1).astype(int)
    return np.flatnonzero(np.r_[True, bins[1:] != bins[:-1]])


def expected_calibration_error(y_true, y_prob, n_bins: int = 10, sample_weight=None) -> float:
    """Weighted mean |observed rate - mean probability| over equal-frequency probability bins."""
    y, p, w = label_vectors(y_true, y_prob, sample_weight)
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    # each bin's |churners - expected churners|, over all the weight
    gaps = np.add.reduceat(w * (y - p), equal_frequency_bins(w, n_bins))
    return float(np.sum(np.abs(gaps)) / np.sum(w))


@dataclass(frozen=True)
class CalibrationFit:
    """Cox's logistic recalibration ``logit P(churn) = intercept + slope * logit(p)``.

    A calibrated model has slope 1 and intercept 0. A slope below 1 means the probabilities are too
    extreme (too high at the top, too low at the bottom: typical of an overfitted model), above 1 too timid.
    ``slope_se``: the slope's standard error (the weights taken as frequencies).
    """

    slope: float
    intercept: float
    slope_se: float


# probabilities are clipped this far from 0 and 1 before their logit (a calibrator may return exactly 0)
_LOGIT_CLIP = 1e-6


def calibration_fit(y_true, y_prob, sample_weight=None, max_iter: int = 100) -> CalibrationFit:
    """Calibration slope and intercept: the (weighted) maximum-likelihood logistic regression of the label
    on ``logit(p)``, by Newton's method with step halving from the model without slope (every row at the
    churn rate; from there Newton cannot overshoot into the flat tails however miscalibrated ``p`` is).

    NaN when undefined: one class only, a constant probability, or no convergence (the probabilities
    separate the classes perfectly, so the slope grows without bound).
    """
    y, p, w = label_vectors(y_true, y_prob, sample_weight)
    nan = CalibrationFit(float("nan"), float("nan"), float("nan"))
    total = np.sum(w)
    rate = np.sum(w * y) / total if total > 0 else 0.0
    if not 0 < rate < 1:
        return nan
    q = np.clip(p, _LOGIT_CLIP, 1 - _LOGIT_CLIP)
    x = np.log(q) - np.log1p(-q)
    if np.ptp(x) == 0:
        return nan
    w = w / total  # the same fit at any weight scale; keeps the Hessian of order one

    def loglik(b: np.ndarray) -> float:
        eta = b[0] + b[1] * x
        return float(np.sum(w * (y * eta - np.logaddexp(0, eta))))

    def gradient_hessian(b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = expit(b[0] + b[1] * x)
        r, v = w * (y - mu), w * mu * (1 - mu)
        hessian = np.array([[np.sum(v), np.sum(v * x)], [np.sum(v * x), np.sum(v * x * x)]])
        return np.array([np.sum(r), np.sum(r * x)]), hessian

    beta = np.array([np.log(rate / (1 - rate)), 0.0])  # intercept, slope
    current = loglik(beta)
    for _ in range(max_iter):
        gradient, hessian = gradient_hessian(beta)
        try:
            step = np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            return nan
        for _halving in range(30):
            candidate = beta + step
            if (value := loglik(candidate)) >= current - 1e-15:
                break
            step = step / 2
        beta, current = candidate, value
        if np.max(np.abs(step)) < 1e-9 * (1 + np.max(np.abs(beta))):
            # the inverse Fisher information of the total weight (the Hessian is per unit of weight)
            covariance = np.linalg.inv(gradient_hessian(beta)[1]) / total
            return CalibrationFit(
                slope=float(beta[1]), intercept=float(beta[0]), slope_se=float(np.sqrt(covariance[1, 1]))
            )
    return nan


@dataclass(frozen=True)
class Empc:
    value: float  # expected maximum profit per customer
    fraction: float  # expected optimal share of customers to target


def empc(y_true, y_score, params: ProfitParams | None = None, sample_weight=None) -> Empc:
    """Expected maximum profit measure for churn and its expected optimal targeted fraction.

    For acceptance rate g, targeting the top of the list up to ROC point (F1 = churners reached,
    F0 = non-churners reached) is worth ``clv * ((g * (1 - d) - f) * pi1 * F1 - (d + f) * pi0 * F0)``
    per customer (d, f: incentive and contact cost over CLV). Only ROC convex hull points can be
    optimal, each on an interval of g; the integral over Beta(alpha, beta) is exact on each interval.
    """
    y, s, w = label_vectors(y_true, y_score, sample_weight)
    pi1 = float(np.sum(w * y) / np.sum(w))
    if pi1 in (0.0, 1.0):
        raise ValueError("EMPC needs both churners and non-churners")
    # the points roc_curve drops lie on segments between the kept ones: the hull is the same
    fpr, tpr, _ = roc_curve(y, s, sample_weight=None if sample_weight is None else w)
    return _empc_of_roc(fpr, tpr, pi1, params or ProfitParams())


def _empc_of_roc(fpr: np.ndarray, tpr: np.ndarray, pi1: float, p: ProfitParams) -> Empc:
    """EMPC from the ROC curve and the churn rate ``pi1`` (both classes present)."""
    pi0 = 1 - pi1
    hull = _upper_hull(fpr, tpr)
    d, f = p.incentive_cost / p.clv, p.contact_cost / p.clv
    # profit of hull point i is a_i * g + b_i; slopes rise along the hull
    a = p.clv * (1 - d) * pi1 * hull[:, 1]
    b = -p.clv * (f * pi1 * hull[:, 1] + (d + f) * pi0 * hull[:, 0])
    prior = stats.beta(p.alpha, p.beta)
    mean_prior = stats.beta(p.alpha + 1, p.beta)  # integral of g h(g) = E[g] * this cdf
    expected_g = p.alpha / (p.alpha + p.beta)
    value = fraction = 0.0
    lo, i = 0.0, 0
    while lo < 1.0:
        # the next hull point takes over where its line crosses the current one
        nxt, hi = None, 1.0
        for j in range(i + 1, len(a)):
            if a[j] > a[i]:
                cross = (b[i] - b[j]) / (a[j] - a[i])
                if cross < hi or (cross == hi and nxt is not None and a[j] > a[nxt]):
                    nxt, hi = j, max(cross, lo)
        mass = prior.cdf(hi) - prior.cdf(lo)
        value += a[i] * expected_g * (mean_prior.cdf(hi) - mean_prior.cdf(lo)) + b[i] * mass
        fraction += (pi1 * hull[i, 1] + pi0 * hull[i, 0]) * mass
        if nxt is None:
            break
        lo, i = hi, nxt
    return Empc(float(value), float(fraction))


def _upper_hull(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """The ROC convex hull from (0, 0) to (1, 1) (Andrew's monotone chain, upper part)."""
    points = sorted(set(zip(fpr.tolist(), tpr.tolist(), strict=True)))
    hull: list[tuple[float, float]] = []
    for x, y in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:  # not a right turn: drop the middle
                hull.pop()
            else:
                break
        hull.append((x, y))
    return np.asarray(hull)


def classification_metrics(
    y_true, y_prob, *, profit: ProfitParams | None = None, lift_fractions=(0.05, 0.1), sample_weight=None
) -> dict[str, float]:
    """Every metric the reports use, by name (NaN where a metric is undefined, such as one class only)."""
    y, p, w = label_vectors(y_true, y_prob, sample_weight)
    # sorted once by probability (stable: tied rows keep their order, so every metric is what it is on the
    # rows as given): each sort inside (sklearn's curves, lift, calibration bins) then finds sorted runs
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    sample_weight = None if sample_weight is None else w
    both = 0 < np.sum(y) < len(y)
    # one ROC curve for the AUC (what roc_auc_score computes) and EMPC
    fpr, tpr, _ = roc_curve(y, p, sample_weight=sample_weight) if both else (None, None, None)
    out = {
        "rows": float(len(y)),
        "churn_rate": float(np.sum(w * y) / np.sum(w)) if len(y) else float("nan"),
        "roc_auc": float(auc(fpr, tpr)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p, sample_weight=sample_weight)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p, sample_weight=sample_weight)) if len(y) else float("nan"),
        "ece": expected_calibration_error(y, p, sample_weight=sample_weight) if len(y) else float("nan"),
    }
    # the calibration error in units of the churn rate: 0.5 means off by half the base rate on average
    out["relative_ece"] = out["ece"] / out["churn_rate"] if out["churn_rate"] > 0 else float("nan")
    fit = calibration_fit(y, p, sample_weight=sample_weight)
    out["calibration_slope"], out["calibration_intercept"] = fit.slope, fit.intercept
    for k in lift_fractions:
        out[f"lift_{round(k * 100)}pct"] = (
            lift_at(y, p, k, sample_weight=sample_weight) if both else float("nan")
        )
    out["top_decile_lift"] = out.get("lift_10pct", lift_at(y, p, 0.1) if both else float("nan"))
    if fpr is not None and tpr is not None and 0 < out["churn_rate"] < 1:
        e = _empc_of_roc(fpr, tpr, out["churn_rate"], profit or ProfitParams())
        out["empc"], out["empc_fraction"] = e.value, e.fraction
    else:
        out["empc"] = out["empc_fraction"] = float("nan")
    return out
