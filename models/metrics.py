"""Model metrics on arrays (pure): ranking, lift, calibration and the expected maximum profit for churn.

scikit-learn computes what it can (ROC AUC, average precision, Brier score, the ROC curve); lift,
calibration error and EMPC are written here. EMPC follows Verbraken, Verbeke and Baesens (2013): the
profit of contacting the top of the list, with the acceptance rate of the retention offer drawn from a
Beta distribution, integrated exactly over the ROC convex hull.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import Field
from scipy import stats
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


def _arrays(y_true, y_score, weight=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y_true, dtype=float)
    s = np.asarray(y_score, dtype=float)
    w = np.ones_like(y) if weight is None else np.asarray(weight, dtype=float)
    if y.shape != s.shape or y.shape != w.shape:
        raise ValueError(f"labels {y.shape}, scores {s.shape} and weights {w.shape} differ in shape")
    return y, s, w


def lift_at(y_true, y_score, fraction: float, sample_weight=None) -> float:
    """Churn rate among the top ``fraction`` by score over the overall churn rate (ties split evenly)."""
    y, s, w = _arrays(y_true, y_score, sample_weight)
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


def expected_calibration_error(y_true, y_prob, n_bins: int = 10, sample_weight=None) -> float:
    """Weighted mean |observed rate - mean probability| over equal-frequency probability bins."""
    y, p, w = _arrays(y_true, y_prob, sample_weight)
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    cum = np.cumsum(w)
    bins = np.minimum((cum - w / 2) / cum[-1] * n_bins, n_bins - 1).astype(int)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        wb = np.sum(w[m])
        total += wb * abs(np.sum(w[m] * y[m]) / wb - np.sum(w[m] * p[m]) / wb)
    return float(total / cum[-1])


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
    y, s, w = _arrays(y_true, y_score, sample_weight)
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
    y, p, w = _arrays(y_true, y_prob, sample_weight)
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
