"""A fitted family of LightGBM churn models, one per tenure cohort, calibrated, with honest baselines (pure).

:func:`models.fit.fit_family` (``from models import fit_family``) fits it on any pandas DataFrame: the
label column, a tenure column, identifier columns to ignore and every other column as a feature (strings
as LightGBM categoricals, booleans and nulls as they are). A family holds

- one pooled LightGBM on every row (cohort as a feature) and a regularised logistic regression, the
  baselines (:mod:`models.baselines`);
- one LightGBM per cohort where the cohort has enough rows and churners; a cohort the pooled model beats
  on validation (or too small, or without validation churners) is served by the pooled model, and the
  family's report says which and why;
- one probability calibrator per cohort (:mod:`models.calibration`) on the validation rows of the serving
  model, and one per cohort for each baseline on the same rows (a comparison of calibrated models).

``family.predict_proba(frame)`` returns calibrated churn probabilities; ``raw_score`` the uncalibrated
ones; ``contributions`` LightGBM's own SHAP values (``pred_contrib``) of the serving model;
:func:`evaluate_family` the metrics of the family and its baselines on labelled rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from features.errors import MissingColumnsError, SchemaMismatchError
from features.params import CohortParams
from models.calibration import Calibrator
from models.encoding import FeatureEncoder
from models.metrics import ProfitParams, classification_metrics
from models.monitoring import DriftProfile
from models.params import ModelParams

POOLED = "pooled"
COHORT_FEATURE = "__cohort"


class TrainingDataError(ValueError):
    """The training rows cannot give a model (no churners, no rows, a cohort without any churner)."""


@dataclass(frozen=True)
class ModelSpec:
    """What to learn: the label, the tenure column that splits cohorts, columns that are not features."""

    label: str = "is_churn"
    tenure: str = "tenure_months"
    id_columns: Sequence[str] = ("subscriber_id", "month")
    features: Sequence[str] | None = None  # None: every other column
    weight: str | None = None  # optional sample weight column
    cohorts: CohortParams = field(default_factory=CohortParams)
    params: ModelParams = field(default_factory=ModelParams)
    profit: ProfitParams = field(default_factory=ProfitParams)

    def feature_columns(self, frame: pd.DataFrame) -> list[str]:
        if self.features is not None:
            return list(self.features)
        skip = {
            self.label,
            *self.id_columns,
            *self.params.exclude_columns,
            *([self.weight] if self.weight else []),
        }
        return [c for c in frame.columns if c not in skip]

    def cohort_of(self, tenure: pd.Series | np.ndarray) -> np.ndarray:
        """Cohort per row: ``names[i]`` for ``boundaries[i-1] <= tenure < boundaries[i]`` (as features)."""
        t = pd.to_numeric(pd.Series(np.asarray(tenure, dtype=object)), errors="coerce").to_numpy(dtype=float)
        index = np.searchsorted(np.asarray(self.cohorts.boundaries, dtype=float), t, side="right")
        names = np.asarray(self.cohorts.names, dtype=object)
        # unknown tenure: the newest cohort (the least history)
        return np.where(np.isnan(t), names[0], names[np.minimum(index, len(names) - 1)])


@dataclass
class ModelFamily:
    """Fitted cohort family: boosters, calibrators, category codes, the feature list and the report."""

    spec: ModelSpec
    encoder: FeatureEncoder
    boosters: dict[str, lgb.Booster]  # per cohort with its own model, and "pooled"
    serving: dict[str, str]  # cohort -> "cohort" or "pooled"
    calibrators: dict[str, Calibrator]
    logistic: Pipeline
    report: dict[str, Any]
    drift: DriftProfile | None = None  # training distribution of the score and the top features (PSI)
    segments: Any = None  # models.segments.UsageSegments, attached by the training stage when it has them
    # per baseline (pooled, logistic) its calibrators per cohort, fitted on the family's calibration rows
    # (None in families registered before the baselines were calibrated: their baselines score raw)
    baseline_calibrators: dict[str, dict[str, Calibrator]] | None = None

    @property
    def features(self) -> tuple[str, ...]:
        return self.encoder.features

    def cohorts(self, frame: pd.DataFrame) -> np.ndarray:
        if self.spec.tenure not in frame.columns:
            raise MissingColumnsError([self.spec.tenure], "predict_proba (tenure splits the cohorts)")
        return self.spec.cohort_of(frame[self.spec.tenure])

    def _matrix(self, frame: pd.DataFrame, cohort: np.ndarray) -> np.ndarray:
        """The encoded features and the cohort code (a constant, so unused, in a cohort's own model)."""
        return encode(self.encoder, frame, self.spec.cohorts.names, cohort)

    def serving_booster_name(self, cohort: str) -> str:
        """The booster serving ``cohort``: its own or the pooled one."""
        return cohort if self.serving[cohort] == "cohort" else POOLED

    def _serving_booster(self, name: str) -> lgb.Booster:
        return self.boosters[self.serving_booster_name(name)]

    def raw_score(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated churn probability of the model serving each row's cohort."""
        cohort = self.cohorts(frame)
        return self._raw_of_matrix(self._matrix(frame, cohort), cohort)

    def _raw_of_matrix(self, x: np.ndarray, cohort: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        for name in self.spec.cohorts.names:
            rows = cohort == name
            if rows.any():
                out[rows] = self._serving_booster(name).predict(x[rows], num_threads=self._threads())
        return out

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated churn probability per row (numpy array in the frame's row order)."""
        return self.calibrate(self.raw_score(frame), self.cohorts(frame))

    def score(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Cohort, raw score, calibrated probability and the drift-monitored values of each row.

        What scoring needs, from one encoding of ``frame`` (``predict_proba`` and ``drift_columns``
        would each encode it).
        """
        cohort = self.cohorts(frame)
        x = self._matrix(frame, cohort)
        raw = self._raw_of_matrix(x, cohort)
        proba = self.calibrate(raw, cohort)
        return cohort, raw, proba, self._drift_of_matrix(x, proba, self._drift_features())

    def calibrate(self, raw: np.ndarray, cohort: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores (each row by its cohort's calibrator)."""
        return _calibrated(self.calibrators, self.spec.cohorts.names, raw, cohort)

    def contributions(self, frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
        """SHAP contributions (log-odds) of the serving model per row and feature, and the feature names.

        The pooled model's cohort feature is folded into the bias column (the last column).
        """
        cohort = self.cohorts(frame)
        x = self._matrix(frame, cohort)
        n = len(self.features)
        out = np.zeros((len(frame), n + 1))
        for name in self.spec.cohorts.names:
            rows = cohort == name
            if rows.any():
                booster = self._serving_booster(name)
                c = np.asarray(booster.predict(x[rows], pred_contrib=True, num_threads=self._threads()))
                out[rows, :n] = c[:, :n]
                out[rows, n] = c[:, n:].sum(axis=1)  # bias (+ the pooled model's cohort term)
        return out, [*self.features, "__bias"]

    def baseline_proba(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        """``pooled`` (the pooled LightGBM) or ``logistic`` probabilities, calibrated per cohort on the rows
        the family's calibrators were fitted on."""
        if which not in (POOLED, "logistic"):
            raise ValueError(f"unknown baseline {which!r} (pooled, logistic)")
        cohort = self.cohorts(frame)
        return self._baseline_of_matrix(self._matrix(frame, cohort), which, cohort)

    def _baseline_of_matrix(self, x: np.ndarray, which: str, cohort: np.ndarray | None = None) -> np.ndarray:
        """The baseline's raw probabilities, calibrated when ``cohort`` is given (and calibrators exist)."""
        if which == POOLED:
            raw = np.asarray(self.boosters[POOLED].predict(x, num_threads=self._threads()))
        else:
            raw = self.logistic.predict_proba(x)[:, 1]
        if cohort is None or not self.baseline_calibrators:
            return raw
        return _calibrated(self.baseline_calibrators[which], self.spec.cohorts.names, raw, cohort)

    def _threads(self) -> int:
        return self.spec.params.num_threads

    def drift_columns(
        self, frame: pd.DataFrame, probability: np.ndarray, features: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """The monitored values of ``frame``: ``score`` (calibrated probability) and the monitored features
        (``features``, by default those of the drift profile)."""
        if features is None:
            features = self._drift_features()
        x = self.encoder.transform(frame) if features else None
        return self._drift_of_matrix(x, probability, features)

    def _drift_features(self) -> list[str]:
        return [c for c in (self.drift.columns if self.drift else []) if c != "score"]

    def _drift_of_matrix(
        self, x: np.ndarray | None, probability: np.ndarray, features: Sequence[str]
    ) -> dict[str, np.ndarray]:
        out = {"score": np.asarray(probability, dtype=float)}
        if x is not None:
            index = {f: i for i, f in enumerate(self.features)}
            out.update({c: x[:, index[c]] for c in features})
        return out


def _calibrated(
    calibrators: dict[str, Calibrator], names: Sequence[str], raw: np.ndarray, cohort: np.ndarray
) -> np.ndarray:
    out = np.empty(len(raw))
    for name in names:
        rows = cohort == name
        if rows.any():
            out[rows] = calibrators[name].predict(raw[rows])
    return out


def _cohort_codes(names: Sequence[str], cohort: np.ndarray) -> np.ndarray:
    return pd.Categorical(cohort, categories=list(names)).codes.astype(np.float64)


def encode(
    encoder: FeatureEncoder, frame: pd.DataFrame, names: Sequence[str], cohort: np.ndarray
) -> np.ndarray:
    """The encoded features of ``frame`` and the cohort code as the last column (one allocation)."""
    x = encoder.transform(frame, extra_columns=1)
    x[:, -1] = _cohort_codes(names, cohort)
    return x


@dataclass
class LabelledRows:
    """Labelled rows: the frame (index reset), their 0/1 labels and their sample weights."""

    frame: pd.DataFrame
    y: np.ndarray
    w: np.ndarray

    def take(self, index: np.ndarray) -> LabelledRows:
        return LabelledRows(self.frame.iloc[index].reset_index(drop=True), self.y[index], self.w[index])


def labelled_rows(frame: pd.DataFrame, spec: ModelSpec, where: str) -> LabelledRows:
    """The rows of ``frame`` with a label (0/1 or boolean), their labels and weights."""
    need = [spec.label, spec.tenure, *([spec.weight] if spec.weight else [])]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, where)
    labelled = frame[frame[spec.label].notna()]
    y = labelled[spec.label].astype(float).to_numpy()
    if not np.isin(y, (0.0, 1.0)).all():
        raise SchemaMismatchError(f"{where}: label {spec.label} must be boolean or 0/1")
    w = labelled[spec.weight].astype(float).to_numpy() if spec.weight else np.ones(len(labelled))
    return LabelledRows(labelled.reset_index(drop=True), y, w)


def model_scores(family: ModelFamily, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Calibrated probabilities of the family and those of both (calibrated) baselines on ``frame`` (one
    encoding)."""
    cohort = family.cohorts(frame)
    x = family._matrix(frame, cohort)
    return {
        "family": family.calibrate(family._raw_of_matrix(x, cohort), cohort),
        POOLED: family._baseline_of_matrix(x, POOLED, cohort),
        "logistic": family._baseline_of_matrix(x, "logistic", cohort),
    }


def report_of_scores(
    family: ModelFamily, cohort: np.ndarray, yv: np.ndarray, wv: np.ndarray, scores: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Metrics of each model's scores, over every row and per cohort."""
    out: dict[str, Any] = {}
    for model, s in scores.items():
        out[model] = {"all": classification_metrics(yv, s, profit=family.spec.profit, sample_weight=wv)}
        for name in family.spec.cohorts.names:
            rows = cohort == name
            if rows.any():
                out[model][name] = classification_metrics(
                    yv[rows], s[rows], profit=family.spec.profit, sample_weight=wv[rows]
                )
    return out


def evaluate_family(
    family: ModelFamily, frame: pd.DataFrame, scores: dict[str, np.ndarray] | None = None
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of the family and both baselines on labelled ``frame``: model -> cohort (and all) -> metric.

    ``scores``: :func:`model_scores` of ``frame`` when the caller has them (``frame`` has no null label).
    """
    rows = labelled_rows(frame, family.spec, "evaluate_family")
    if scores is None:
        scores = model_scores(family, rows.frame)
    elif len(rows.frame) != len(frame):
        raise ValueError("evaluate_family: scores given for a frame with unlabelled rows")
    return report_of_scores(family, family.cohorts(rows.frame), rows.y, rows.w, scores)


# Families registered before the calibrator moved to models.calibration pickled it under this name:
# a champion trained by an earlier release still unpickles (and scores the same).
_Calibrator = Calibrator
