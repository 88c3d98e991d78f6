"""Which snapshot months have labels by a run month, and the training window they give.

The churn window of snapshot M closes at the end of M + gap + window months (``churn`` config): only
then is its label final. Training as of a run month uses only matured months (train), and so does the
measurement of what a warning list was worth (evaluate): both stages read the rule here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow.compute as pc

from features.calendar import add_months
from features.labels import label_window
from pipelines.core.config import Config
from pipelines.core.errors import InputNotReadyError
from pipelines.core.lake import Lake


@dataclass(frozen=True)
class TrainingWindow:
    """The months a training as of ``run_month`` uses."""

    run_month: str
    fit_months: tuple[str, ...]
    valid_month: str
    test_month: str

    @property
    def months(self) -> list[str]:
        return [*self.fit_months, self.valid_month, self.test_month]


def matured(month: str, run_month: str, cfg: Config) -> bool:
    """The churn window of snapshot ``month`` closed by the end of ``run_month``."""
    last = label_window(month, gap_months=cfg.churn.gap_months, window_months=cfg.churn.window_months)[1]
    return last <= run_month


def labelled_months(lake: Lake, run_month: str) -> list[str]:
    """Snapshot months up to ``run_month`` with features and available labels."""
    if not lake.exists("features_monthly"):
        raise InputNotReadyError(f"no features_monthly table under {lake.cfg.lake_root}: run build_features")
    if not lake.exists("labels_monthly"):
        raise InputNotReadyError(f"no labels_monthly table under {lake.cfg.lake_root}: run build_features")
    features = {m for (m,) in lake.partition_values("features_monthly", "month") if m <= run_month}
    labels = lake.read_arrow(
        "labels_monthly", columns=["month", "label_available"], partitions={"month": features}
    )
    available = labels.filter(pc.fill_null(labels["label_available"], False))["month"]
    return sorted(features & set(pc.unique(available).to_pylist()))


def matured_score_months(lake: Lake, month: str) -> list[str]:
    """Score months with a warning list whose labels matured (window closed) by ``month`` (what the
    evaluation measures and the uplift models learn from)."""
    if not lake.exists("warning_list") or not lake.exists("labels_monthly"):
        return []
    scored = {m for (m,) in lake.partition_values("warning_list", "score_month")}
    labelled = set(labelled_months(lake, month))
    return sorted(m for m in scored & labelled if matured(m, month, lake.cfg))


def training_window(run_month: str, labelled_months: Sequence[str], cfg: Config) -> TrainingWindow:
    """Test, validation and fit months as of ``run_month`` among months with features and labels.

    ``labelled_months``: snapshot months with features and available labels (later ones are ignored
    here, whatever the tables hold).
    """
    mature = sorted(m for m in set(labelled_months) if m <= run_month and matured(m, run_month, cfg))
    if len(mature) < 3:
        first = next((m for m in sorted(labelled_months) if m <= run_month), None)
        hint = ""
        if first:
            gap, window = cfg.churn.gap_months, cfg.churn.window_months
            hint = f"; the first can train as of {add_months(first, gap + window + 2)}"
        raise InputNotReadyError(
            f"train as of {run_month}: needs 3 snapshot months with matured labels (fit, validate, test), "
            f"has {len(mature)} ({', '.join(mature) or 'none'}){hint}"
        )
    test, valid = mature[-1], mature[-2]
    fit = tuple(mature[:-2][-cfg.train.fit_months :])
    return TrainingWindow(run_month, fit, valid, test)
