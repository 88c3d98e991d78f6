"""Stage: score a run month (``stage``) with the Spark scoring pass (``batch``)."""

from pipelines.score.stage import (
    ScoreReport,
    customer_risk,
    read_month_features,
    score_month,
    sustained_drift,
)

__all__ = [
    "ScoreReport",
    "customer_risk",
    "read_month_features",
    "score_month",
    "sustained_drift",
]
