"""Churn models on pandas frames (pure: no I/O, no Spark, no MLflow).

from models import ModelSpec, fit_family
family = fit_family(train_df, spec=ModelSpec(), valid=valid_df)
proba = family.predict_proba(test_df)

Modules: ``family`` (the fitted family and its evaluation), ``fit`` (``fit_family`` in named steps),
``baselines`` (the pooled LightGBM fit and the logistic baseline), ``calibration``, ``encoding``,
``metrics``, ``significance`` (the promotion gates' tests), ``monitoring`` (drift profile, PSI),
``scoring`` (what a score means, batch by batch), ``segments`` (usage segments), ``evaluation``
(campaign effects), ``offers``, ``params``, ``plots``.
"""

from models.family import ModelFamily, ModelSpec, TrainingDataError, evaluate_family
from models.fit import fit_family
from models.metrics import ProfitParams, classification_metrics, empc
from models.params import ModelParams

__all__ = [
    "ModelFamily",
    "ModelParams",
    "ModelSpec",
    "ProfitParams",
    "TrainingDataError",
    "classification_metrics",
    "empc",
    "evaluate_family",
    "fit_family",
]
