"""The family's honest baselines and the LightGBM fit they share with it (pure).

- the **pooled** LightGBM: one booster on every row, the cohort as a categorical feature. It is the
  baseline every cohort model must beat on validation, and the model serving a cohort that does not;
- the **logistic** regression: regularised, numeric features imputed (mean) and scaled, categorical codes
  one-hot encoded (rare ones grouped). A model that does not beat it has learned nothing a linear score
  could not.

``fit_booster`` is the one LightGBM fit (the pooled model and each cohort's own model): early-stopped on
the validation rows, reproducible (fixed seed, deterministic, column-wise histograms).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.params import ModelParams


def lgb_params(p: ModelParams) -> dict[str, Any]:
    """LightGBM's parameters of a fit: the configured ones, with what makes a fit reproducible."""
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


def fit_booster(p: ModelParams, train: lgb.Dataset, valid: lgb.Dataset, yv: np.ndarray) -> lgb.Booster:
    """Early-stopped booster on ``train`` (a Dataset or a subset of the shared one, binned once).

    Early stopping needs both classes among the validation labels ``yv``; without them the booster
    grows ``num_boost_round`` trees.
    """
    callbacks: list[Callable[..., Any]] = []
    if len(yv) and 0 < yv.sum() < len(yv):
        callbacks.append(lgb.early_stopping(p.early_stopping_rounds, first_metric_only=True, verbose=False))
    params = {**lgb_params(p), "metric": "binary_logloss"}
    booster = lgb.train(params, train, p.num_boost_round, valid_sets=[valid], callbacks=callbacks)
    if booster.best_iteration > 0:  # keep only the trees up to the best validation round
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=booster.best_iteration))
    return booster


def fit_logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, categorical: list[int], c: float) -> Pipeline:
    """The logistic baseline on the encoded matrix ``x``; ``categorical``: the columns holding codes."""
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
    model = Pipeline([("prep", prep), ("lr", LogisticRegression(C=c, max_iter=2000))])
    return model.fit(x, y, lr__sample_weight=w)
