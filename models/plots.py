"""Model charts as matplotlib figures (pure: the caller decides where they go).

Figures are made without pyplot: nothing is registered in pyplot's global state, so a job or a backtest
that draws many never accumulates open figures, figures can be drawn off the main thread, and
``savefig`` needs no backend choice (notebooks show them with ``display(fig)``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve


def gains_chart(y_true, scores: Mapping[str, np.ndarray], title: str = "Cumulative gains") -> Figure:
    """Share of churners reached against share of subscribers contacted, one line per model."""
    y = np.asarray(y_true, dtype=float)
    fig = Figure(figsize=(11, 4.2))
    ax, ax2 = fig.subplots(1, 2)
    x = np.arange(1, len(y) + 1) / max(len(y), 1)
    for name, s in scores.items():
        order = np.argsort(-np.asarray(s), kind="stable")
        reached = np.cumsum(y[order]) / max(y.sum(), 1)
        ax.plot(x, reached, label=name)
        rate = np.cumsum(y[order]) / np.arange(1, len(y) + 1)
        ax2.plot(x, rate / max(y.mean(), 1e-12), label=name)
    ax.plot([0, 1], [0, 1], "k:", label="random")
    ax.set(xlabel="share contacted (by score)", ylabel="share of churners reached", title=title)
    ax2.axhline(1, color="k", ls=":")
    ax2.set(xlabel="share contacted (by score)", ylabel="lift", title="Lift", xlim=(0, 0.5))
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def calibration_chart(y_true, probs: Mapping[str, np.ndarray], n_bins: int = 10) -> Figure:
    """Observed churn rate against predicted probability (equal-frequency bins)."""
    fig = Figure(figsize=(5.5, 4.5))
    ax = fig.subplots()
    top = 0.0
    for name, p in probs.items():
        observed, predicted = calibration_curve(y_true, p, n_bins=n_bins, strategy="quantile")
        ax.plot(predicted, observed, "o-", label=name)
        top = max(top, float(np.max(predicted)), float(np.max(observed)))
    ax.plot([0, top], [0, top], "k:", label="perfect")
    ax.set(xlabel="predicted churn probability", ylabel="observed churn rate", title="Calibration")
    ax.legend()
    fig.tight_layout()
    return fig


def score_distribution(y_true, p: np.ndarray) -> Figure:
    """Histogram of calibrated probabilities for churners and stayers."""
    y = np.asarray(y_true, dtype=bool)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(0, max(float(np.max(p)), 1e-6), 40).tolist()
    ax.hist(p[~y], bins=bins, alpha=0.6, density=True, label="stayed")
    ax.hist(p[y], bins=bins, alpha=0.6, density=True, label="churned")
    ax.set(xlabel="churn probability", ylabel="density", title="Score distribution (test month)")
    ax.legend()
    fig.tight_layout()
    return fig


def importance_chart(importance: Mapping[str, Mapping[str, float]], top: int = 20) -> Figure:
    """Gain importance of the top features, one panel per model."""
    fig = Figure(figsize=(5 * len(importance), 0.3 * top + 1.5))
    axes = fig.subplots(1, len(importance), squeeze=False)
    for ax, (name, values) in zip(axes[0], importance.items(), strict=True):
        items = sorted(values.items(), key=lambda kv: kv[1], reverse=True)[:top][::-1]
        ax.barh([k for k, _ in items], [v for _, v in items])
        ax.set(title=name, xlabel="gain")
        ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def cohort_metric_bars(summary, metrics: Mapping[str, str], cohorts: list[str]) -> Figure:
    """Bars of each of ``metrics`` (column -> title) per cohort and model from a table with ``cohort``,
    ``model`` and the metric columns (the backtest summary)."""
    fig = Figure(figsize=(5 * len(metrics), 3.8))
    axes = np.atleast_1d(fig.subplots(1, len(metrics)))
    models = list(dict.fromkeys(summary["model"]))
    width = 0.8 / max(len(models), 1)
    x = np.arange(len(cohorts))
    for ax, (column, title) in zip(axes, metrics.items(), strict=True):
        for k, model in enumerate(models):
            rows = summary[summary["model"] == model].set_index("cohort").reindex(cohorts)
            ax.bar(
                x + (k - (len(models) - 1) / 2) * width,
                rows[column].to_numpy(dtype=float),
                width,
                label=model,
            )
        ax.set_xticks(x, cohorts)
        ax.set(title=title)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig
