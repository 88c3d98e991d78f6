"""Fitting a cohort family (pure): ``fit_family`` as a sequence of named steps.

1. **prepare**: the labelled training and validation rows (a stratified validation share when none is given),
   the validation rows cut into three slices (``model.validation_split``): ``stop``, ``choose`` and
   ``calibrate``, so that no choice is judged on the rows it was made on;
2. **downsample**: past ``model.row_budget`` rows, non-churners are sampled and weighted by the inverse rate;
3. **fit per cohort**: the pooled booster on every row, then each cohort's own booster where the cohort has
   enough rows and churners, all on one binned LightGBM Dataset, early-stopped on the ``stop`` slice;
4. **choose serving**: a cohort's own model serves unless the pooled one beats it on the ``choose`` slice;
   a cohort without churners in either slice has no evidence for its own model and the pooled one serves;
5. **calibrate**: one calibrator per cohort on the ``calibrate`` slice's scores of its serving model, and the
   baselines' calibrators on the same rows;
6. **report**: the validation metrics of the family and both calibrated baselines on the ``calibrate``
   slice, each row's probability from a calibrator fitted on the slice's other half (cross-fitted), so
   every reported figure is out-of-sample;
7. **profile drift**: the out-of-sample score and top features of the validation rows, for PSI at scoring.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from features.columns import DRIFT_EXEMPT
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


SLICES = ("stop", "choose", "calibrate")


def split_validation(val: LabelledRows, spec: ModelSpec) -> dict[str, np.ndarray]:
    """Step 1: the positions of the validation rows in each slice (``stop``, ``choose``, ``calibrate``),
    in the shares of ``model.validation_split``, drawn from the seed within each cohort. The slices are
    disjoint and cover every row; the labels play no part in the draw (so that the labels of one slice
    cannot move a row into another)."""
    shares = np.cumsum(spec.params.validation_split)[:-1]
    cohort = pd.Series(spec.cohort_of(val.frame[spec.tenure])).astype(str)
    rng = np.random.default_rng(spec.params.seed)
    part = np.empty(len(val.y), dtype=np.int8)
    for _, index in sorted(cohort.groupby(cohort).indices.items()):
        index = rng.permutation(index)
        cuts = np.round(shares * len(index)).astype(int)
        for k, chunk in enumerate(np.split(index, cuts)):
            part[chunk] = k
    return {name: np.flatnonzero(part == k) for k, name in enumerate(SLICES)}


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


def _in_slice(design: _Design, slices: dict[str, np.ndarray], name: str, cohort: str | None) -> np.ndarray:
    """Positions of the validation rows of slice ``name`` (of ``cohort``, or every cohort for None)."""
    index = slices[name]
    return index if cohort is None else index[design.cohort_v[index] == cohort]


def _both_classes(y: np.ndarray) -> bool:
    return bool(0 < y.sum() < len(y))


def _fit_cohort(
    name: str,
    design: _Design,
    fit: LabelledRows,
    val: LabelledRows,
    slices: dict[str, np.ndarray],
    p: ModelParams,
) -> tuple[lgb.Booster | None, dict[str, Any]]:
    """Step 3, fit per cohort: the cohort's own booster (None when too small, without validation evidence
    or the config forces the pooled model) and its report entry."""
    rows, rows_v = design.cohort == name, design.cohort_v == name
    stop, choose = _in_slice(design, slices, "stop", name), _in_slice(design, slices, "choose", name)
    info: dict[str, Any] = {
        "train_rows": int(rows.sum()),
        "train_churners": int(fit.y[rows].sum()),
        "valid_rows": int(rows_v.sum()),
        "valid_churners": int(val.y[rows_v].sum()),
        **{f"{s}_churners": int(val.y[_in_slice(design, slices, s, name)].sum()) for s in SLICES},
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
    if not _both_classes(val.y[stop]) or (p.serve == "auto" and not _both_classes(val.y[choose])):
        # no early stopping point or no comparison with the pooled model: an own model would serve
        # without evidence
        info["reason"] = "no validation evidence (no churner or no stayer in the stop or choose slice)"
        return None, info
    dtrain, dvalid = (
        design.dtrain.subset(np.flatnonzero(rows).tolist()),
        design.dvalid.subset(stop.tolist()),
    )
    info["reason"] = "own model"
    return fit_booster(p, dtrain, dvalid, val.y[stop]), info


def _choose_serving(
    name: str,
    booster: lgb.Booster | None,
    info: dict[str, Any],
    design: _Design,
    val: LabelledRows,
    choose: np.ndarray,
    raw_v: np.ndarray,
    p: ModelParams,
) -> str:
    """Step 4, choose serving: the cohort's own model unless it has none or (``serve: auto``) the pooled
    model beats it on the cohort's rows of the ``choose`` slice (positions ``choose``). ``raw_v``: the
    pooled model's validation scores, overwritten on the cohort's rows by its own model's when it serves."""
    if booster is None:
        info["served_by"] = POOLED
        return POOLED
    rows_v = design.cohort_v == name
    own_v = booster.predict(design.xv[rows_v], num_threads=p.num_threads)
    served = "cohort"
    own_c = booster.predict(design.xv[choose], num_threads=p.num_threads)
    y, w = val.y[choose], val.w[choose]
    if _both_classes(y):  # AUC needs both classes
        own_auc = roc_auc_score(y, own_c, sample_weight=w)
        pooled_auc = roc_auc_score(y, raw_v[choose], sample_weight=w)
        info["choose_auc"] = {"cohort": float(own_auc), "pooled": float(pooled_auc)}
        if p.serve == "auto" and pooled_auc > own_auc + p.pooled_margin:
            served = POOLED
            info["reason"] = (
                f"pooled model better on the choose slice (AUC {pooled_auc:.4f} vs {own_auc:.4f})"
            )
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


def _fit_boosters(
    design: _Design, fit: LabelledRows, val: LabelledRows, slices: dict[str, np.ndarray], spec: ModelSpec
) -> _Served:
    """Steps 3 and 4: the pooled booster, then per cohort its own booster and the serving choice."""
    p = spec.params
    stop = slices["stop"]
    boosters = {POOLED: fit_booster(p, design.dtrain, design.dvalid.subset(stop.tolist()), val.y[stop])}
    pooled_v = np.asarray(boosters[POOLED].predict(design.xv, num_threads=p.num_threads))
    served = _Served(boosters, {}, {}, pooled_v, pooled_v.copy())
    for name in spec.cohorts.names:
        booster, served.cohorts[name] = _fit_cohort(name, design, fit, val, slices, p)
        if booster is not None:
            boosters[name] = booster
        served.serving[name] = _choose_serving(
            name,
            booster,
            served.cohorts[name],
            design,
            val,
            _in_slice(design, slices, "choose", name),
            served.raw_v,
            p,
        )
    return served


def _calibrators_on(
    raw: np.ndarray, index: np.ndarray, design: _Design, val: LabelledRows, spec: ModelSpec
) -> tuple[dict[str, Calibrator], dict[str, str]]:
    """A calibrator per cohort of the scores ``raw`` (every validation row) fitted on the rows ``index``."""
    p = spec.params
    return fit_calibrators(
        raw[index],
        val.y[index],
        val.w[index],
        design.cohort_v[index],
        spec.cohorts.names,
        method=p.calibration,
        min_positives=p.min_calibration_positives,
    )


def _baseline_scores(family: ModelFamily, served: _Served, design: _Design) -> dict[str, np.ndarray]:
    """Raw validation scores of the serving models and both baselines."""
    return {
        "family": served.raw_v,
        POOLED: served.pooled_v,
        "logistic": family._baseline_of_matrix(design.xv, "logistic"),
    }


def _calibrate(
    raw: dict[str, np.ndarray],
    design: _Design,
    val: LabelledRows,
    slices: dict[str, np.ndarray],
    spec: ModelSpec,
) -> tuple[dict[str, Calibrator], dict[str, dict[str, Calibrator]], dict[str, str]]:
    """Step 5: per cohort, on the ``calibrate`` slice, a calibrator of its serving model's scores and one
    of each baseline's; and how the family's were fitted (own or shared)."""
    rows = slices["calibrate"]
    if not _both_classes(val.y[rows]):
        raise TrainingDataError(
            f"fit_family: the calibration slice ({len(rows)} validation rows) holds "
            f"{int(val.y[rows].sum())} churners: nothing to calibrate on (more validation rows, or a larger "
            "model.validation_split share)"
        )
    calibrators, how = _calibrators_on(raw["family"], rows, design, val, spec)
    baselines = {
        which: _calibrators_on(raw[which], rows, design, val, spec)[0] for which in (POOLED, "logistic")
    }
    return calibrators, baselines, how


def _cross_fitted(
    raw: np.ndarray, design: _Design, val: LabelledRows, slices: dict[str, np.ndarray], spec: ModelSpec
) -> np.ndarray:
    """Step 6: calibrated scores of the ``calibrate`` slice's rows, each half by calibrators fitted on the
    other half (the positions in ``slices["calibrate"]`` order); a half without both classes to fit on is
    calibrated by the whole slice's calibrators (in-sample: too few churners to cross-fit)."""
    rows = slices["calibrate"]
    half = np.arange(len(rows)) % 2 == 0
    out = np.empty(len(rows))
    for mine in (half, ~half):
        other = rows[~mine] if _both_classes(val.y[rows[~mine]]) else rows
        calibrators, _ = _calibrators_on(raw, other, design, val, spec)
        cohort = design.cohort_v[rows[mine]]
        for name, calibrator in calibrators.items():
            at = cohort == name
            if at.any():
                out[np.flatnonzero(mine)[at]] = calibrator.predict(raw[rows[mine]][at])
    return out


def _validation_report(
    family: ModelFamily,
    raw: dict[str, np.ndarray],
    design: _Design,
    val: LabelledRows,
    slices: dict[str, np.ndarray],
) -> dict:
    """Metrics of the family and both baselines on the ``calibrate`` slice, cross-fitted (out-of-sample)."""
    rows = slices["calibrate"]
    scores = {model: _cross_fitted(r, design, val, slices, family.spec) for model, r in raw.items()}
    return report_of_scores(family, design.cohort_v[rows], val.y[rows], val.w[rows], scores)


def _profile_drift(
    family: ModelFamily, raw: np.ndarray, design: _Design, val: LabelledRows, slices: dict[str, np.ndarray]
) -> DriftProfile:
    """Step 7: the drift profile of the validation rows, whose scores no booster was fitted on: calibrated
    by the family's calibrators on the ``stop`` and ``choose`` slices, cross-fitted on ``calibrate``."""
    probability = family.calibrate(raw, design.cohort_v)
    probability[slices["calibrate"]] = _cross_fitted(raw, design, val, slices, family.spec)
    return _drift_profile(family, design.xv, probability, family.spec.params.monitor_features)


def fit_family(
    train: pd.DataFrame,
    *,
    spec: ModelSpec | None = None,
    valid: pd.DataFrame | None = None,
) -> ModelFamily:
    """Fit the cohort family on ``train``; early stopping, the serving choice and calibration each use
    their own slice of ``valid`` (:func:`split_validation`).

    ``valid=None``: a validation share (``spec.params.valid_share``) is drawn from ``train``, stratified by
    cohort and label. Rows with a null label are dropped. Raises :class:`TrainingDataError` when there is
    nothing to learn from.
    """
    spec = spec or ModelSpec()
    p = spec.params
    fit, val = _prepare_split(train, valid, spec)
    slices = split_validation(val, spec)
    sample, rate = _downsample(fit, p.row_budget, p.seed)
    design = _design(sample, val, spec)
    served = _fit_boosters(design, sample, val, slices, spec)
    logistic = fit_logistic(design.x, sample.y, sample.w, design.categorical, p.logistic_c)
    report: dict[str, Any] = {
        "rows": {"train": len(fit.y), "train_fitted": len(sample.y), "valid": len(val.y)},
        "slices": {name: len(index) for name, index in slices.items()},
        "downsample_rate": rate,
        "features": list(design.encoder.features),
        "cohorts": served.cohorts,
        "iterations": {name: b.num_trees() for name, b in served.boosters.items()},
    }
    family = ModelFamily(spec, design.encoder, served.boosters, served.serving, {}, logistic, report)
    raw = _baseline_scores(family, served, design)
    family.calibrators, family.baseline_calibrators, how = _calibrate(raw, design, val, slices, spec)
    for name in spec.cohorts.names:
        served.cohorts[name]["calibration"] = how[name]
    report["valid"] = _validation_report(family, raw, design, val, slices)
    family.drift = _profile_drift(family, raw["family"], design, val, slices)
    return family


def _drift_profile(family: ModelFamily, x: np.ndarray, probability: np.ndarray, top: int) -> DriftProfile:
    """Reference distribution of the calibrated ``probability`` and of the ``top`` numeric features by the
    pooled model's gain (best first), those of ``features.columns.DRIFT_EXEMPT`` left out.

    ``x``: the reference rows' matrix (with the cohort column).
    """
    gain = family.boosters[POOLED].feature_importance("gain")[: len(family.features)]
    numeric = [
        i
        for i in np.argsort(-gain, kind="stable")
        if i not in family.encoder.categorical and gain[i] > 0 and family.features[i] not in DRIFT_EXEMPT
    ]
    features = [family.features[i] for i in numeric[:top]]
    return DriftProfile.fit(family._drift_of_matrix(x, probability, features))


def drift_reference(family: ModelFamily, frame: pd.DataFrame, probability: np.ndarray) -> DriftProfile:
    """The drift profile of ``frame`` scored ``probability`` by a model none of its rows was fitted on
    (the training stage's test month): what scoring compares each month with."""
    cohort = family.cohorts(frame)
    return _drift_profile(
        family, family._matrix(frame, cohort), probability, family.spec.params.monitor_features
    )


def refit_family(family: ModelFamily, train: pd.DataFrame, *, baselines: bool = True) -> ModelFamily:
    """The served family refitted on ``train`` (every matured month, the validation and test months
    included): each booster grows the iterations early stopping gave it; the encoder, serving choice,
    calibrators and drift reference are the gated family's (the training stage then takes the refit's own
    scores of the run month, unlabelled, as its reference) (the gated family's metrics stay the evidence:
    nothing is left to evaluate the refit on).

    ``baselines``: the boosters that serve no cohort (the pooled one when every cohort's own model beats
    it, a cohort's own when the pooled one serves it) and the logistic baseline are refitted on the same
    rows too, as the backtest needs to compare them at the horizon. Without, they stay the gated family's,
    with the calibrators fitted on their own scores: no line is scored with them (the drift monitor ranks
    its features by the pooled booster's gain: the gated one's, as for the gated version), and they were
    more than a third of the refit's time. The served probabilities are the same either way."""
    spec, p = family.spec, family.spec.params
    rows = labelled_rows(train, spec, "refit_family")
    sample, rate = _downsample(rows, p.row_budget, p.seed)
    cohort = spec.cohort_of(sample.frame[spec.tenure])
    x = encode(family.encoder, sample.frame, spec.cohorts.names, cohort)
    layout: dict[str, Any] = {
        "feature_name": [*[_safe_name(f) for f in family.features], COHORT_FEATURE],
        "categorical_feature": [*family.encoder.categorical, len(family.features)],
        "params": lgb_params(p),
    }
    data = lgb.Dataset(x, sample.y, weight=sample.w, **layout).construct()
    params = {**lgb_params(p), "metric": "binary_logloss"}
    serving = {family.serving_booster_name(name) for name in family.serving}
    refitted = [name for name in family.boosters if baselines or name in serving]
    boosters = dict(family.boosters)
    for name in refitted:
        subset = data if name == POOLED else data.subset(np.flatnonzero(cohort == name).tolist())
        boosters[name] = lgb.train(params, subset, family.boosters[name].num_trees())
    logistic = (
        fit_logistic(x, sample.y, sample.w, layout["categorical_feature"], p.logistic_c)
        if baselines
        else family.logistic
    )
    months = sorted(map(str, train["month"].unique())) if "month" in train.columns else []
    report = {
        **family.report,
        "refit": {
            "rows": len(rows.y),
            "rows_fitted": len(sample.y),
            "downsample_rate": rate,
            "months": months,
            "iterations": {name: boosters[name].num_trees() for name in refitted},
            # kept as the gated family fitted them (``baselines=False``)
            "kept": [n for n in family.boosters if n not in refitted] + ([] if baselines else ["logistic"]),
        },
    }
    return ModelFamily(
        spec,
        family.encoder,
        boosters,
        dict(family.serving),
        family.calibrators,
        logistic,
        report,
        drift=family.drift,
        segments=family.segments,
        baseline_calibrators=family.baseline_calibrators,
    )
