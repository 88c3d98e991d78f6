"""Stage: train the cohort family as of a run month (``stage``), its MLflow record (``mlflow_run``)."""

from pipelines.train.stage import (
    TrainResult,
    backtest,
    fit_as_of,
    model_spec,
    promotion_decision,
    read_training_frame,
    summarize_backtest,
    train_month,
    training_window,
)

__all__ = [
    "TrainResult",
    "backtest",
    "fit_as_of",
    "model_spec",
    "promotion_decision",
    "read_training_frame",
    "summarize_backtest",
    "train_month",
    "training_window",
]
