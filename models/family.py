"""A family of LightGBM churn models, one per tenure cohort, calibrated, with honest baselines (pure).

``fit_family(train, spec=..., valid=...)`` works on any pandas DataFrame: the label column, a tenure
column, identifier columns to ignore and every other column as a feature (strings as LightGBM
categoricals, booleans and nulls as they are). It fits

- one pooled LightGBM on every row (cohort as a feature) and a regularised logistic regression, the
  baselines;
- one LightGBM per cohort where the cohort has enough rows and churners, early-stopped on the
  validation rows; a cohort the pooled model beats on validation (or too small) is served by the pooled
  model, and the family's report says which and why;
- one probability calibrator per cohort (isotonic or Platt) on the validation rows of the serving model.

``family.predict_proba(frame)`` returns calibrated churn probabilities; ``raw_score`` the uncalibrated
ones; ``contributions`` LightGBM's own SHAP values (``pred_contrib``) of the serving model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from features.errors import MissingColumnsError, SchemaMismatchError
from features.params import CohortParams
from models.encoding import FeatureEncoder
from models.metrics import ProfitParams, classification_metrics
from models.monitoring import DriftProfile
from models.params import ModelParams

POOLED = "pooled"
COHORT_FEATURE = "__cohort"
DRIFT_REFERENCE_ROWS = 200_000


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


class _Calibrator:
    """Isotonic or Platt calibration of raw probabilities (fitted with weights)."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.model: Any = None

    def fit(self, raw: np.ndarray, y: np.ndarray, w: np.ndarray) -> _Calibrator:
        if self.method == "isotonic":
            self.model = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
                raw, y, sample_weight=w
            )
        else:
            self.model = LogisticRegression(C=1e6).fit(_logit(raw)[:, None], y, sample_weight=w)
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.clip(self.model.predict(raw), 0.0, 1.0)
        return self.model.predict_proba(_logit(raw)[:, None])[:, 1]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


@dataclass
class ModelFamily:
    """Fitted cohort family: boosters, calibrators, category codes, the feature list and the report."""

    spec: ModelSpec
    encoder: FeatureEncoder
    boosters: dict[str, lgb.Booster]  # per cohort with its own model, and "pooled"
    serving: dict[str, str]  # cohort -> "cohort" or "pooled"
    calibrators: dict[str, _Calibrator]
    logistic: Pipeline
    report: dict[str, Any]
    drift: DriftProfile | None = None  # training distribution of the score and the top features (PSI)
    segments: Any = None  # models.segments.UsageSegments, attached by the training stage when it has them

    @property
    def features(self) -> tuple[str, ...]:
        return self.encoder.features

    def cohorts(self, frame: pd.DataFrame) -> np.ndarray:
        if self.spec.tenure not in frame.columns:
            raise MissingColumnsError([self.spec.tenure], "predict_proba (tenure splits the cohorts)")
        return self.spec.cohort_of(frame[self.spec.tenure])

    def _matrix(self, frame: pd.DataFrame, cohort: np.ndarray) -> np.ndarray:
        """The encoded features and the cohort code (a constant, so unused, in a cohort's own model)."""
        return _encode(self.encoder, frame, self.spec.cohorts.names, cohort)

    def _serving_booster(self, name: str) -> lgb.Booster:
        return self.boosters[name if self.serving[name] == "cohort" else POOLED]

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
        out = np.empty(len(raw))
        for name in self.spec.cohorts.names:
            rows = cohort == name
            if rows.any():
                out[rows] = self.calibrators[name].predict(raw[rows])
        return out

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
                c = booster.predict(x[rows], pred_contrib=True, num_threads=self._threads())
                out[rows, :n] = c[:, :n]
                out[rows, n] = c[:, n:].sum(axis=1)  # bias (+ the pooled model's cohort term)
        return out, [*self.features, "__bias"]

    def baseline_proba(self, frame: pd.DataFrame, which: str) -> np.ndarray:
        """``pooled`` (the pooled LightGBM, uncalibrated) or ``logistic`` probabilities."""
        if which not in (POOLED, "logistic"):
            raise ValueError(f"unknown baseline {which!r} (pooled, logistic)")
        return self._baseline_of_matrix(self._matrix(frame, self.cohorts(frame)), which)

    def _baseline_of_matrix(self, x: np.ndarray, which: str) -> np.ndarray:
        if which == POOLED:
            return self.boosters[POOLED].predict(x, num_threads=self._threads())
        return self.logistic.predict_proba(x)[:, 1]

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


def _lgb_params(p: ModelParams) -> dict[str, Any]:
    return {
        **p.lightgbm,
        "objective": p.lightgbm.get("objective", "binary"),
        "verbosity": -1,
        "seed": p.seed,
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": p.num_threads,
        "feature_pre_filter": False,
    }


def _fit_booster(p: ModelParams, train: lgb.Dataset, valid: lgb.Dataset, yv: np.ndarray) -> lgb.Booster:
    """Early-stopped booster on ``train`` (a Dataset or a subset of the shared one, binned once)."""
    callbacks = []
    if len(yv) and 0 < yv.sum() < len(yv):
        callbacks.append(lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False))
    params = {**_lgb_params(p), "metric": "binary_logloss"}
    booster = lgb.train(params, train, p.num_boost_round, valid_sets=[valid], callbacks=callbacks)
    if booster.best_iteration > 0:  # keep only the trees up to the best validation round
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    return booster


def _cohort_codes(names: Sequence[str], cohort: np.ndarray) -> np.ndarray:
    return pd.Categorical(cohort, categories=list(names)).codes.astype(np.float64)


def _encode(
    encoder: FeatureEncoder, frame: pd.DataFrame, names: Sequence[str], cohort: np.ndarray
) -> np.ndarray:
    """The encoded features of ``frame`` and the cohort code as the last column (one allocation)."""
    x = encoder.transform(frame, extra_columns=1)
    x[:, -1] = _cohort_codes(names, cohort)
    return x


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def _prepare(frame: pd.DataFrame, spec: ModelSpec, where: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    need = [spec.label, spec.tenure, *([spec.weight] if spec.weight else [])]
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise MissingColumnsError(missing, where)
    labelled = frame[frame[spec.label].notna()]
    y = labelled[spec.label].astype(float).to_numpy()
    if not np.isin(y, (0.0, 1.0)).all():
        raise SchemaMismatchError(f"{where}: label {spec.label} must be boolean or 0/1")
    w = labelled[spec.weight].astype(float).to_numpy() if spec.weight else np.ones(len(labelled))
    return labelled.reset_index(drop=True), y, w


def _downsample(frame: pd.DataFrame, y: np.ndarray, w: np.ndarray, budget: int, seed: int):
    """Keep every churner and a random share of non-churners, weighted by its inverse (calibration holds)."""
    if len(frame) <= budget:
        return frame, y, w, 1.0
    negatives = int((y == 0).sum())
    keep_neg = max(1, budget - int((y == 1).sum()))
    rate = min(1.0, keep_neg / negatives)
    rng = np.random.default_rng(seed)
    keep = (y == 1) | (rng.random(len(y)) < rate)
    w = np.where(y == 0, w / rate, w)
    return frame[keep].reset_index(drop=True), y[keep], w[keep], rate


def fit_family(
    train: pd.DataFrame,
    *,
    spec: ModelSpec | None = None,
    valid: pd.DataFrame | None = None,
) -> ModelFamily:
    """Fit the cohort family on ``train``; early stopping, calibration and the serving choice use ``valid``.

    ``valid=None``: a validation share (``spec.params.valid_share``) is drawn from ``train``, stratified by
    cohort and label. Rows with a null label are dropped. Raises :class:`TrainingDataError` when there is
    nothing to learn from.
    """
    spec = spec or ModelSpec()
    p = spec.params
    train, y, w = _prepare(train, spec, "fit_family (train)")
    if valid is None:
        if len(train) < 10:
            raise TrainingDataError(f"fit_family: {len(train)} labelled rows are too few to split")
        strata = pd.Series(spec.cohort_of(train[spec.tenure])).astype(str) + "/" + pd.Series(y).astype(str)
        counts = strata.map(strata.value_counts())
        stratify = strata.where(counts >= 2, "rare")
        tr, va = train_test_split(
            np.arange(len(train)), test_size=p.valid_share, random_state=p.seed, stratify=stratify
        )
        valid, yv, wv = train.iloc[va].reset_index(drop=True), y[va], w[va]
        train, y, w = train.iloc[tr].reset_index(drop=True), y[tr], w[tr]
    else:
        valid, yv, wv = _prepare(valid, spec, "fit_family (valid)")
    if y.sum() == 0 or y.sum() == len(y):
        raise TrainingDataError(f"fit_family: the training rows hold {int(y.sum())} churners of {len(y)}")
    rows_before = len(train)
    # the drift reference: up to 200,000 training rows drawn before downsampling
    reference = np.random.default_rng(p.seed).permutation(len(train))[:DRIFT_REFERENCE_ROWS]
    unsampled = train
    train, y, w, rate = _downsample(train, y, w, p.row_budget, p.seed)
    features = spec.feature_columns(train)
    encoder = FeatureEncoder.fit(train, features)
    names = [_safe_name(f) for f in encoder.features]
    if len(set(names)) != len(names):
        raise SchemaMismatchError("fit_family: feature names collide once made LightGBM-safe")
    cohort_names = list(spec.cohorts.names)
    cohort, cohort_v = spec.cohort_of(train[spec.tenure]), spec.cohort_of(valid[spec.tenure])
    xp = _encode(encoder, train, cohort_names, cohort)
    xpv = _encode(encoder, valid, cohort_names, cohort_v)
    categorical = [*encoder.categorical, len(names)]
    # binned once: the cohort models train on subsets of the pooled model's Dataset
    layout = {
        "feature_name": [*names, COHORT_FEATURE],
        "categorical_feature": categorical,
        "params": _lgb_params(p),
    }
    dtrain = lgb.Dataset(xp, y, weight=w, **layout).construct()
    dvalid = lgb.Dataset(xpv, yv, weight=wv, reference=dtrain, **layout).construct()
    boosters = {POOLED: _fit_booster(p, dtrain, dvalid, yv)}
    serving: dict[str, str] = {}
    report: dict[str, Any] = {
        "rows": {"train": int(rows_before), "train_fitted": len(y), "valid": len(yv)},
        "downsample_rate": rate,
        "features": list(encoder.features),
        "cohorts": {},
    }
    pooled_v = boosters[POOLED].predict(xpv, num_threads=p.num_threads)
    raw_v = pooled_v.copy()  # each validation row's serving model's score, filled in below
    for name in cohort_names:
        rows, rows_v = cohort == name, cohort_v == name
        info: dict[str, Any] = {
            "train_rows": int(rows.sum()),
            "train_churners": int(y[rows].sum()),
            "valid_rows": int(rows_v.sum()),
            "valid_churners": int(yv[rows_v].sum()),
        }
        enough = rows.sum() >= p.min_cohort_rows and y[rows].sum() >= p.min_cohort_positives
        if p.serve == "pooled" or not enough:
            serving[name] = POOLED
            info["reason"] = (
                "forced by config"
                if p.serve == "pooled"
                else (
                    f"too few rows or churners for its own model (need {p.min_cohort_rows} rows and "
                    f"{p.min_cohort_positives} churners)"
                )
            )
        else:
            booster = _fit_booster(
                p, dtrain.subset(np.flatnonzero(rows)), dvalid.subset(np.flatnonzero(rows_v)), yv[rows_v]
            )
            boosters[name] = booster
            serving[name] = "cohort"
            info["reason"] = "own model"
            own_v = booster.predict(xpv[rows_v], num_threads=p.num_threads)
            both = 0 < yv[rows_v].sum() < rows_v.sum()
            if both:
                own_auc = roc_auc_score(yv[rows_v], own_v, sample_weight=wv[rows_v])
                pooled_auc = roc_auc_score(yv[rows_v], pooled_v[rows_v], sample_weight=wv[rows_v])
                info["valid_auc"] = {"cohort": float(own_auc), "pooled": float(pooled_auc)}
                if p.serve == "auto" and pooled_auc > own_auc + p.pooled_margin:
                    serving[name] = POOLED
                    info["reason"] = (
                        f"pooled model better on validation (AUC {pooled_auc:.4f} vs {own_auc:.4f})"
                    )
            if serving[name] == "cohort":
                raw_v[rows_v] = own_v
            info["trees"] = booster.num_trees()
        info["served_by"] = serving[name]
        report["cohorts"][name] = info
    family = ModelFamily(spec, encoder, boosters, serving, {}, None, report)  # type: ignore[arg-type]
    # calibrators on the validation rows of each cohort's serving model
    shared = _Calibrator(p.calibration).fit(raw_v, yv, wv)
    for name in cohort_names:
        rows_v = cohort_v == name
        if yv[rows_v].sum() >= p.min_calibration_positives and rows_v.sum() > yv[rows_v].sum():
            family.calibrators[name] = _Calibrator(p.calibration).fit(raw_v[rows_v], yv[rows_v], wv[rows_v])
            report["cohorts"][name]["calibration"] = "own"
        else:
            family.calibrators[name] = shared
            report["cohorts"][name]["calibration"] = "shared (too few validation churners)"
    family.logistic = _fit_logistic(xp, y, w, categorical, p)
    scores_v = {
        "family": family.calibrate(raw_v, cohort_v),
        POOLED: pooled_v,
        "logistic": family._baseline_of_matrix(xpv, "logistic"),
    }
    report["valid"] = _report_of_scores(family, cohort_v, yv, wv, scores_v)
    if rate == 1.0:  # not downsampled: the reference rows are rows of the training matrix
        xr, cohort_r = xp[reference], cohort[reference]
    else:
        cohort_r = spec.cohort_of(unsampled[spec.tenure].iloc[reference])
        xr = _encode(encoder, unsampled.iloc[reference], cohort_names, cohort_r)
    family.drift = _drift_profile(family, xr, cohort_r, p.monitor_features)
    return family


def _drift_profile(family: ModelFamily, x: np.ndarray, cohort: np.ndarray, top: int) -> DriftProfile:
    """Training distribution of the score and of the ``top`` numeric features by the pooled model's gain.

    ``x``: the reference rows' matrix (with the cohort column), ``cohort`` their cohorts.
    """
    gain = family.boosters[POOLED].feature_importance("gain")[: len(family.features)]
    numeric = [i for i in np.argsort(-gain) if i not in family.encoder.categorical and gain[i] > 0]
    features = [family.features[i] for i in numeric[:top]]
    probability = family.calibrate(family._raw_of_matrix(x, cohort), cohort)
    return DriftProfile.fit(family._drift_of_matrix(x, probability, features))


def _fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, categorical: list[int], p: ModelParams
) -> Pipeline:
    numeric = [i for i in range(x.shape[1]) if i not in categorical]
    prep = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler()),
                numeric,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True),
                    OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                ),
                categorical,
            ),
        ]
    )
    model = Pipeline([("prep", prep), ("lr", LogisticRegression(C=p.logistic_c, max_iter=2000))])
    return model.fit(x, y, lr__sample_weight=w)


def model_scores(family: ModelFamily, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Calibrated probabilities of the family and those of both baselines on ``frame`` (one encoding)."""
    cohort = family.cohorts(frame)
    x = family._matrix(frame, cohort)
    return {
        "family": family.calibrate(family._raw_of_matrix(x, cohort), cohort),
        POOLED: family._baseline_of_matrix(x, POOLED),
        "logistic": family._baseline_of_matrix(x, "logistic"),
    }


def _report_of_scores(
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
    labelled, y, w = _prepare(frame, family.spec, "evaluate_family")
    if scores is None:
        scores = model_scores(family, labelled)
    elif len(labelled) != len(frame):
        raise ValueError("evaluate_family: scores given for a frame with unlabelled rows")
    return _report_of_scores(family, family.cohorts(labelled), y, w, scores)
