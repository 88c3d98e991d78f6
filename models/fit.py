"""Fitting a cohort family (pure): ``fit_family`` as a sequence of named steps.

1. **prepare**: the labelled training and validation rows (a stratified validation share when none is given);
2. **downsample**: past ``model.row_budget`` rows, non-churners are sampled and weighted by the inverse rate;
3. **fit per cohort**: the pooled booster on every row, then each cohort's own booster where the cohort has
   enough rows and churners, all on one binned LightGBM Dataset;
4. **choose serving**: a cohort's own model serves unless the pooled one beats it on validation;
5. **calibrate**: one calibrator per cohort on the validation scores of its serving model;
6. **profile drift**: the training distribution of the score and the top features, for PSI at scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from features.errors import SchemaMismatchError
from models.baselines import fit_booster, fit_logistic, lgb_params
from models.calibration import Calibrator, fit_calibrators
from models.encoding import FeatureEncoder
from models.family import (
    COHORT_FEATURE,
    POOLED,
    LabelledRows,
    ModelFamily,
    ModelSpec,
    TrainingDataError,
    encode,
    labelled_rows,
    report_of_scores,
)
from models.monitoring import DriftProfile
from models.params import ModelParams

# the drift reference: at most this many training rows, drawn before downsampling
DRIFT_REFERENCE_ROWS = 200_000


@dataclass
class _Design:
    """The encoded training and validation matrices (cohort code last), their cohorts and LightGBM
    Datasets, binned once: the cohort models train on subsets of the pooled model's Dataset."""

    encoder: FeatureEncoder
    cohort: np.ndarray
    cohort_v: np.ndarray
    x: np.ndarray
    xv: np.ndarray
    categorical: list[int]
    dtrain: lgb.Dataset
    dvalid: lgb.Dataset


def _safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def _prepare_split(
    train: pd.DataFrame, valid: pd.DataFrame | None, spec: ModelSpec
) -> tuple[LabelledRows, LabelledRows]:
    """Step 1, prepare: the labelled training and validation rows.

    Without ``valid``, a validation share is drawn from ``train``, stratified by cohort and label.
    """
    fit = labelled_rows(train, spec, "fit_family (train)")
    if valid is not None:
        val = labelled_rows(valid, spec, "fit_family (valid)")
    else:
        if len(fit.frame) < 10:
            raise TrainingDataError(f"fit_family: {len(fit.frame)} labelled rows are too few to split")
        strata = (
            pd.Series(spec.cohort_of(fit.frame[spec.tenure])).astype(str) + "/" + pd.Series(fit.y).astype(str)
        )
        counts = strata.map(strata.value_counts())
        stratify = strata.where(counts >= 2, "rare")
        tr, va = train_test_split(
            np.arange(len(fit.frame)),
            test_size=spec.params.valid_share,
            random_state=spec.params.seed,
            stratify=stratify,
        )
        fit, val = fit.take(tr), fit.take(va)
    if fit.y.sum() == 0 or fit.y.sum() == len(fit.y):
        raise TrainingDataError(
            f"fit_family: the training rows hold {int(fit.y.sum())} churners of {len(fit.y)}"
        )
    return fit, val


def _downsample(rows: LabelledRows, budget: int, seed: int) -> tuple[LabelledRows, float]:
    """Step 2, downsample: every churner and a random share of non-churners, weighted by its inverse (so
    calibration holds), when there are more rows than ``budget``; and the share kept."""
    if len(rows.frame) <= budget:
        return rows, 1.0
    y = rows.y
    negatives = int((y == 0).sum())
    keep_neg = max(1, budget - int((y == 1).sum()))
    rate = min(1.0, keep_neg / negatives)
    rng = np.random.default_rng(seed)
    keep = (y == 1) | (rng.random(len(y)) < rate)
    w = np.where(y == 0, rows.w / rate, rows.w)
    return LabelledRows(rows.frame[keep].reset_index(drop=True), y[keep], w[keep]), rate


def _design(fit: LabelledRows, val: LabelledRows, spec: ModelSpec) -> _Design:
    """The feature encoder fitted on the training rows, both matrices and their LightGBM Datasets."""
    encoder = FeatureEncoder.fit(fit.frame, spec.feature_columns(fit.frame))
    names = [_safe_name(f) for f in encoder.features]
    if len(set(names)) != len(names):
        raise SchemaMismatchError("fit_family: feature names collide once made LightGBM-safe")
    cohort_names = list(spec.cohorts.names)
    cohort, cohort_v = spec.cohort_of(fit.frame[spec.tenure]), spec.cohort_of(val.frame[spec.tenure])
    x = encode(encoder, fit.frame, cohort_names, cohort)
    xv = encode(encoder, val.frame, cohort_names, cohort_v)
    categorical = [*encoder.categorical, len(names)]
    layout: dict[str, Any] = {
        "feature_name": [*names, COHORT_FEATURE],
        "categorical_feature": categorical,
        "params": lgb_params(spec.params),
    }
    dtrain = lgb.Dataset(x, fit.y, weight=fit.w, **layout).construct()
    dvalid = lgb.Dataset(xv, val.y, weight=val.w, reference=dtrain, **layout).construct()
    return _Design(encoder, cohort, cohort_v, x, xv, categorical, dtrain, dvalid)


def _fit_cohort(
    name: str, design: _Design, fit: LabelledRows, val: LabelledRows, p: ModelParams
) -> tuple[lgb.Booster | None, dict[str, Any]]:
    """Step 3, fit per cohort: the cohort's own booster (None when too small or the config forces the
    pooled model) and its report entry."""
    rows, rows_v = design.cohort == name, design.cohort_v == name
    info: dict[str, Any] = {
        "train_rows": int(rows.sum()),
        "train_churners": int(fit.y[rows].sum()),
        "valid_rows": int(rows_v.sum()),
        "valid_churners": int(val.y[rows_v].sum()),
    }
    if p.serve == "pooled":
        info["reason"] = "forced by config"
        return None, info
    if rows.sum() < p.min_cohort_rows or fit.y[rows].sum() < p.min_cohort_positives:
        info["reason"] = (
            f"too few rows or churners for its own model (need {p.min_cohort_rows} rows and "
            f"{p.min_cohort_positives} churners)"
        )
        return None, info
    dtrain, dvalid = (
        design.dtrain.subset(np.flatnonzero(rows).tolist()),
        design.dvalid.subset(np.flatnonzero(rows_v).tolist()),
    )
    info["reason"] = "own model"
    return fit_booster(p, dtrain, dvalid, val.y[rows_v]), info


def _choose_serving(
    name: str,
    booster: lgb.Booster | None,
    info: dict[str, Any],
    design: _Design,
    val: LabelledRows,
    raw_v: np.ndarray,
    p: ModelParams,
) -> str:
    """Step 4, choose serving: the cohort's own model unless it has none or (``serve: auto``) the pooled
    model beats it on the cohort's validation rows. ``raw_v``: the pooled model's validation scores,
    overwritten on the cohort's rows by its own model's when it serves."""
    if booster is None:
        info["served_by"] = POOLED
        return POOLED
    rows_v = design.cohort_v == name
    own_v = booster.predict(design.xv[rows_v], num_threads=p.num_threads)
    served = "cohort"
    y, w = val.y[rows_v], val.w[rows_v]
    if 0 < y.sum() < rows_v.sum():  # AUC needs both classes
        own_auc = roc_auc_score(y, own_v, sample_weight=w)
        pooled_auc = roc_auc_score(y, raw_v[rows_v], sample_weight=w)
        info["valid_auc"] = {"cohort": float(own_auc), "pooled": float(pooled_auc)}
        if p.serve == "auto" and pooled_auc > own_auc + p.pooled_margin:
            served = POOLED
            info["reason"] = f"pooled model better on validation (AUC {pooled_auc:.4f} vs {own_auc:.4f})"
    if served == "cohort":
        raw_v[rows_v] = own_v
    info["trees"] = booster.num_trees()
    info["served_by"] = served
    return served


@dataclass
class _Served:
    """Steps 3 and 4: the boosters, which model serves each cohort, the report per cohort, and the
    validation scores of the pooled model and of each row's serving model."""

    boosters: dict[str, lgb.Booster]
    serving: dict[str, str]
    cohorts: dict[str, dict[str, Any]]
    pooled_v: np.ndarray
    raw_v: np.ndarray


def _fit_boosters(design: _Design, fit: LabelledRows, val: LabelledRows, spec: ModelSpec) -> _Served:
    """Steps 3 and 4: the pooled booster, then per cohort its own booster and the serving choice."""
    p = spec.params
    boosters = {POOLED: fit_booster(p, design.dtrain, design.dvalid, val.y)}
    pooled_v = np.asarray(boosters[POOLED].predict(design.xv, num_threads=p.num_threads))
    served = _Served(boosters, {}, {}, pooled_v, pooled_v.copy())
    for name in spec.cohorts.names:
        booster, served.cohorts[name] = _fit_cohort(name, design, fit, val, p)
        if booster is not None:
            boosters[name] = booster
        served.serving[name] = _choose_serving(
            name, booster, served.cohorts[name], design, val, served.raw_v, p
        )
    return served


def _calibrate(served: _Served, design: _Design, val: LabelledRows, spec: ModelSpec) -> dict[str, Calibrator]:
    """Step 5: a calibrator per cohort on the validation scores of its serving model (noted in the report)."""
    names = spec.cohorts.names
    p = spec.params
    calibrators, how = fit_calibrators(
        served.raw_v,
        val.y,
        val.w,
        design.cohort_v,
        names,
        method=p.calibration,
        min_positives=p.min_calibration_positives,
    )
    for name in names:
        served.cohorts[name]["calibration"] = how[name]
    return calibrators


def _validation_report(family: ModelFamily, served: _Served, design: _Design, val: LabelledRows) -> dict:
    """Metrics of the family and both baselines on the validation rows."""
    scores_v = {
        "family": family.calibrate(served.raw_v, design.cohort_v),
        POOLED: served.pooled_v,
        "logistic": family._baseline_of_matrix(design.xv, "logistic"),
    }
    return report_of_scores(family, design.cohort_v, val.y, val.w, scores_v)


def _profile_drift(
    family: ModelFamily, fit: LabelledRows, design: _Design, reference: np.ndarray, rate: float
) -> DriftProfile:
    """Step 6: the drift profile on the ``reference`` rows of ``fit``, as they were before downsampling."""
    spec = family.spec
    if rate == 1.0:  # not downsampled: the reference rows are rows of the training matrix
        x, cohort = design.x[reference], design.cohort[reference]
    else:
        rows = fit.frame.iloc[reference]
        cohort = spec.cohort_of(rows[spec.tenure])
        x = encode(design.encoder, rows, spec.cohorts.names, cohort)
    return _drift_profile(family, x, cohort, spec.params.monitor_features)


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
    fit, val = _prepare_split(train, valid, spec)
    reference = np.random.default_rng(p.seed).permutation(len(fit.y))[:DRIFT_REFERENCE_ROWS]
    sample, rate = _downsample(fit, p.row_budget, p.seed)
    design = _design(sample, val, spec)
    served = _fit_boosters(design, sample, val, spec)
    calibrators = _calibrate(served, design, val, spec)
    logistic = fit_logistic(design.x, sample.y, sample.w, design.categorical, p.logistic_c)
    report: dict[str, Any] = {
        "rows": {"train": len(fit.y), "train_fitted": len(sample.y), "valid": len(val.y)},
        "downsample_rate": rate,
        "features": list(design.encoder.features),
        "cohorts": served.cohorts,
    }
    family = ModelFamily(spec, design.encoder, served.boosters, served.serving, calibrators, logistic, report)
    report["valid"] = _validation_report(family, served, design, val)
    family.drift = _profile_drift(family, fit, design, reference, rate)
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
