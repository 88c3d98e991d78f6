"""Probability calibration per cohort (pure): isotonic or Platt, fitted on validation rows with weights.

A calibrator maps a model's raw probability to one that matches the observed churn rate. Each cohort
gets its own calibrator, fitted on the validation rows of the model serving it, when it has enough
validation churners; otherwise it shares the one fitted on every validation row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

SHARED_REASON = "shared (too few validation churners)"


class Calibrator:
    """Isotonic or Platt calibration of raw probabilities (fitted with weights)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.model: Any = None

    def fit(self, raw: np.ndarray, y: np.ndarray, w: np.ndarray) -> Calibrator:
        if self.method == "isotonic":
            self.model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
                raw, y, sample_weight=w
            )
        else:
            self.model = LogisticRegression(C=1e6).fit(logit(raw)[:, None], y, sample_weight=w)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.clip(self.model.predict(raw), 0.0, 1.0)
        return self.model.predict_proba(logit(raw)[:, None])[:, 1]


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped away from 0 and 1."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def fit_calibrators(
    raw: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    cohort: np.ndarray,
    names: Sequence[str],
    *,
    method: Literal["isotonic", "platt"] | str,
    min_positives: int,
) -> tuple[dict[str, Calibrator], dict[str, str]]:
    """One calibrator per cohort in ``names`` and how each was fitted (``own`` or shared).

    ``raw``, ``y``, ``w``, ``cohort``: the validation rows' raw scores (of each row's serving model), labels,
    weights and cohorts. A cohort with fewer than ``min_positives`` churners, or no stayer, among them
    gets the calibrator fitted on every row.
    """
    shared = Calibrator(method).fit(raw, y, w)
    calibrators: dict[str, Calibrator] = {}
    how: dict[str, str] = {}
    for name in names:
        rows = cohort == name
        if y[rows].sum() >= min_positives and rows.sum() > y[rows].sum():
            calibrators[name] = Calibrator(method).fit(raw[rows], y[rows], w[rows])
            how[name] = "own"
        else:
            calibrators[name] = shared
            how[name] = SHARED_REASON
    return calibrators, how
