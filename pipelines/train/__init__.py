"""Stage: train the cohort family as of a run month (``stage``), its MLflow record (``mlflow_run``), its
promotion gates (``gates``).

The public names, listed once here (``training_window`` is ``pipelines.core.maturity``'s, re-exported for
``notebooks/02_train_and_evaluate.ipynb``)."""

from pipelines.train.gates import RowEvidence, gate_evidence, promotion_decision
from pipelines.train.stage import (
    TrainResult,
    backtest,
    backtest_figure,
    backtest_markdown,
    fit_as_of,
    model_spec,
    read_training_frame,
    refit_as_of,
    summarize_backtest,
    train_month,
    training_window,
)

__all__ = [
    "RowEvidence",
    "TrainResult",
    "backtest",
    "backtest_figure",
    "backtest_markdown",
    "fit_as_of",
    "gate_evidence",
    "model_spec",
    "promotion_decision",
    "read_training_frame",
    "refit_as_of",
    "summarize_backtest",
    "train_month",
    "training_window",
]
